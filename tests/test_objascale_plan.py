"""ObjaScale planning, assets, config and export without Blender."""
from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

from objascale.assets.hdri import Hdri, check_hdri_file, list_hdris
from objascale.assets.objects import ObjectAsset, local_objects, split_of
from objascale.assets.selection import select_objects
from objascale.assets.sweethome3d import materialize, parse_properties
from objascale.config import ConfigError, build_config
from objascale.plan import Catalog, area_check, area_ratio_bounds, plan_image, samples_for_ratio


def _catalog(n_cats=3, per_cat=4):
    objs = [ObjectAsset(id=f"t:{c}-{k}", source="t", category=f"cat{c}", path=f"/x/{c}-{k}.obj", license="CC0-1.0")
            for c in range(n_cats) for k in range(per_cat)]
    by = {}
    for o in objs:
        by.setdefault(o.category, []).append(o)
    hdris = [Hdri(f"h{k}", f"/h{k}.exr", "CC0-1.0", "") for k in range(3)]
    return Catalog(sorted(by), by, objs, hdris)


def test_area_ratio_reaches_both_ends_log_uniformly():
    cfg = build_config("paper", overrides=dict(min_side=4000, max_side=4096, num_images=3000))
    cat = _catalog()
    r = np.array([plan_image(cfg, cat, i)["area_ratio_planned"] for i in range(3000)])
    assert r.min() >= 1e-6 and r.max() <= 0.25
    # log-uniform over 12.4 e-folds: both ends are hit within a few percent of the range
    lo, hi = math.log(1e-6), math.log(0.25)
    assert (np.log(r.min()) - lo) / (hi - lo) < 0.01 and (hi - np.log(r.max())) / (hi - lo) < 0.01
    # and the middle is uniform in log: each tenth of the log-range holds ~10 %
    hist, _ = np.histogram(np.log(r), bins=10, range=(lo, hi))
    assert hist.min() > 0.07 * len(r) and hist.max() < 0.13 * len(r)


def test_area_floor_min_pixels_on_small_images():
    cfg = build_config("mini")
    lo, hi = area_ratio_bounds(cfg, 256, 256)
    assert lo == pytest.approx(cfg.min_pixels / 256**2) and hi == 0.25
    cat = _catalog()
    for i in range(200):
        p = plan_image(cfg, cat, i)
        assert p["area_px_planned"] >= cfg.min_pixels - 1e-9
        assert cfg.min_side <= max(p["width"], p["height"]) <= cfg.max_side


def test_plan_deterministic_and_attempts_differ():
    cfg = build_config("mini")
    cat = _catalog()
    assert plan_image(cfg, cat, 5) == plan_image(cfg, cat, 5)
    assert plan_image(cfg, cat, 5, 1) != plan_image(cfg, cat, 5, 0)
    other = build_config("mini", overrides=dict(seed=1))
    assert plan_image(other, cat, 5) != plan_image(cfg, cat, 5)


def test_categories_round_robin_and_samples_monotone():
    cfg = build_config("mini")
    cat = _catalog(n_cats=3)
    assert [plan_image(cfg, cat, i)["category"] for i in range(6)] == ["cat0", "cat1", "cat2"] * 2
    s = [samples_for_ratio(cfg, r) for r in (1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.25)]
    assert s[0] == cfg.samples_min and s[-1] == cfg.samples_max and s == sorted(s)


def test_split_disjoint_and_stable():
    ids = [f"obj{k}" for k in range(2000)]
    ev = {i for i in ids if split_of(i, 0.2) == "eval"}
    assert 300 < len(ev) < 500
    assert ev == {i for i in ids if split_of(i, 0.2) == "eval"}
    objs = [ObjectAsset(id=i, source="t", category=f"c{k % 5}", path="") for k, i in enumerate(ids)]
    cats_e, by_e = select_objects(objs, build_config("mini", overrides=dict(split="eval", num_categories=0)))
    cats_t, by_t = select_objects(objs, build_config("mini", overrides=dict(split="train", num_categories=0)))
    e = {o.id for v in by_e.values() for o in v}
    t = {o.id for v in by_t.values() for o in v}
    assert e and t and not (e & t) and len(e | t) == len(ids)


def test_area_check():
    cfg = build_config("mini")
    assert area_check(cfg, 1000, 0, False) == "target mask is empty"
    assert area_check(cfg, 1000, 1000, False) is None
    assert "above" in area_check(cfg, 1000, 2000, False)
    assert "below" in area_check(cfg, 1000, 500, False)
    assert area_check(cfg, 1000, 600, True) is None  # occluders may hide up to max_occlusion


def test_config_errors_and_toml(tmp_path):
    with pytest.raises(ConfigError):
        build_config("mini", overrides=dict(area_ratio_min=0.5, area_ratio_max=0.1))
    with pytest.raises(ConfigError):
        build_config("nope")
    with pytest.raises(ConfigError):
        build_config("mini", file_values={"not_a_key": 1})
    p = tmp_path / "c.toml"
    p.write_text("[objascale]\nseed = 7\nmax_side = 300\n")
    from objascale.config import load_toml

    cfg = build_config("mini", load_toml(p), dict(seed=9))
    assert cfg.seed == 9 and cfg.max_side == 300
    assert build_config("paper").num_images == 68 * 150


def test_properties_parser_and_materialize(tmp_path):
    props = parse_properties("# c\nid#1=Pack#chair\nname#1=Chair \\u00e9\nmodelRotation#1=1 0 0 \\\n 0 1 0 0 0 1\n")
    assert props["name#1"] == "Chair é" and props["modelRotation#1"] == "1 0 0 0 1 0 0 0 1"
    arc = tmp_path / "p.sh3f"
    with zipfile.ZipFile(arc, "w") as z:
        z.writestr("pack/chair/chair.obj", "v 0 0 0\n")
        z.writestr("pack/chair/chair.mtl", "")
    f = materialize(f"{arc}!pack/chair/chair.obj", cache=tmp_path / "cache")
    assert f.read_text() == "v 0 0 0\n" and (f.parent / "chair.mtl").is_file()


def test_hdri_and_local_sources(tmp_path):
    bad = tmp_path / "h" / "broken.exr"
    bad.parent.mkdir()
    bad.write_bytes(b"not an exr at all, sorry" * 10)
    assert "magic" in check_hdri_file(bad)
    found, skipped = list_hdris([str(bad.parent)], builtin=False)
    assert not found and skipped and "broken.exr" in skipped[0][0]
    (tmp_path / "objs" / "mug").mkdir(parents=True)
    (tmp_path / "objs" / "mug" / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "objs" / "b.stl").write_text("solid\n")
    objs = local_objects(tmp_path / "objs")
    assert [(o.category, o.id) for o in objs] == [("object", "local:b.stl"), ("mug", "local:mug/a.obj")]


def test_coco_and_hdf5_round_trip(tmp_path):
    """Records -> annotations.json (pycocotools) and HDF5 (h5py), checked against the masks."""
    import h5py
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from segcore.prompt import Prompt
    from objascale.export import build_coco, write_hdf5, write_manifest
    from objascale.io import Layout, atomic_write_json, encode_image

    lay = Layout(tmp_path)
    rng = np.random.default_rng(0)
    masks = []
    for i in range(3):
        h, w = 40 + i, 50
        m = np.zeros((h, w), bool)
        m[5 + i:20 + i, 7:30 - i] = True
        m[rng.integers(0, h), rng.integers(0, w)] = True
        masks.append(m)
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        lay.images.mkdir(parents=True, exist_ok=True)
        (lay.image_path(i, "png")).write_bytes(encode_image(rgb, "png"))
        lay.masks.mkdir(parents=True, exist_ok=True)
        lay.mask_path(i).write_bytes(encode_image((m * 255).astype(np.uint8), "png"))
        pr = Prompt.from_mask(m)
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        b = pr.box_xyxy.tolist()
        atomic_write_json(lay.record_path(i), {
            "index": i, "file_name": f"images/{i:06d}.png", "mask_file": f"masks/{i:06d}.png", "width": w, "height": h,
            "seed": 1, "attempt": 0, "split": "eval", "object_id": f"o{i}", "object_source": "t", "object_license": "CC0-1.0",
            "object_attribution": "a", "hdri": {}, "area_ratio": m.mean(), "area_ratio_planned": m.mean(),
            "category": "cup" if i else "mug", "area_px": int(m.sum()), "bbox_xyxy": b,
            "bbox_xywh": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "rho": pr.rho.tolist(), "rle": rle})
    atomic_write_json(lay.skip_path(3), {"index": 3, "reason": "broken mesh"})
    man = write_manifest(tmp_path, 5)
    assert man["counts"] == {"done": 3, "skipped": 1, "pending": 1}
    build_coco(tmp_path, 5, ["cup", "mug"], {"seed": 1})
    coco = COCO(str(tmp_path / "annotations.json"))
    assert len(coco.getImgIds()) == 3
    for i, m in enumerate(masks):
        ann = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))[0]
        assert np.array_equal(coco.annToMask(ann).astype(bool), m)
        assert ann["area"] == m.sum() and coco.loadCats(ann["category_id"])[0]["name"] == ("cup" if i else "mug")
    h5 = write_hdf5(tmp_path, 5, "objascale-test", "eval")
    assert h5.name == "objascale-test-eval-v1.hdf5"
    import io

    with h5py.File(h5) as f:
        assert f["rgb_images"].shape == (3,) and f["positions"].dtype == np.float32
        assert f["metadata"].attrs["dataset_name"] == "objascale-test"
        for i, m in enumerate(masks):
            dec = np.asarray(Image.open(io.BytesIO(f["instance_masks"][i].tobytes()))) > 128
            assert np.array_equal(dec, m)
            img = Image.open(io.BytesIO(f["rgb_images"][i].tobytes()))
            assert img.format == "JPEG" and img.size == (m.shape[1], m.shape[0])
            np.testing.assert_allclose(f["positions"][i], Prompt.from_mask(m).rho, rtol=1e-5, atol=1e-6)
            ys, xs = np.nonzero(m)
            assert f["instance_mask_bboxes"][i].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
            assert f["image_instance_indices"][i].tolist() == [i, 1]
        assert json.loads(f["metadata"].attrs["coco_licenses"])[0]["name"] == "CC0-1.0"


def test_atomic_path_replaces_on_success_and_cleans_up_on_error(tmp_path):
    from objascale.io import atomic_path

    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_sweethome3d_model_rotation_convention(tmp_path):
    """modelRotation is row-major R applied as p' = R p in the OBJ's Y-up frame (not R^T)."""
    from objascale.assets.sweethome3d import OBJ_TO_ZUP, model_rotation_zup, parse_properties

    props = parse_properties("id#1=x#chair\nmodelRotation#1=1 0 0 0 0 1 0 -1 0\n")
    rot = tuple(float(v) for v in props["modelRotation#1"].split())
    m = np.array(model_rotation_zup(rot))
    c, r = np.array(OBJ_TO_ZUP), np.array(rot).reshape(3, 3)
    # a model authored Z-up: its top at OBJ +Z. R maps +Z to +Y (Sweet Home 3D's up); R^T would map it to -Y
    top_obj = np.array([0.0, 0.0, 1.0])
    assert np.allclose(r @ top_obj, [0, 1, 0]) and np.allclose(r.T @ top_obj, [0, -1, 0])
    # after the importer (C) and our matrix, the top points up in Blender (+Z)
    assert np.allclose(m @ (c @ top_obj), [0, 0, 1])
    # a non-symmetric rotation: the box's extents follow R (catalogue width, height, depth along x, y, z)
    box = np.array([[x, y, z] for x in (0, 20.0) for y in (0, 18.9) for z in (0, 8.2)])  # as stored in the file
    r3 = np.array([0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0]).reshape(3, 3)  # the catalogue's headphones
    assert np.allclose(np.ptp(box @ r3.T, 0), [8.2, 20.0, 18.9])
    m3 = np.array(model_rotation_zup(tuple(r3.ravel())))
    # Blender axes: x = width, y = depth, z = height
    assert np.allclose(np.ptp((box @ c.T) @ m3.T, 0), [8.2, 18.9, 20.0])
    assert model_rotation_zup(()) is None and model_rotation_zup((1.0, 0.0)) is None


def test_sweethome3d_catalogue_rotations_match_sizes():
    """On the installed catalogue: every rotated model's extents after R match its catalogue width/height/depth."""
    from objascale.assets import sweethome3d as sh

    try:
        archives = sh.find_archives(install=False)
    except Exception as e:  # noqa: BLE001 - any failure means the catalogue is not installed here
        pytest.skip(f"Sweet Home 3D catalogue not installed: {e}")
    assert archives
    objs = [o for o in sh.sweethome3d_objects() if o.rotation and o.id.endswith(("#headphones", "#armchair1"))]
    if not objs:
        pytest.skip("catalogue without the checked models")
    for o in objs:
        v = np.array([[float(x) for x in ln.split()[1:4]] for ln in open(sh.materialize(o.path), errors="replace")
                      if ln.startswith("v ")])
        r = np.array(o.rotation).reshape(3, 3)
        w, d, h = o.size_cm
        want = np.array([w, h, d]) / max(w, h, d)
        ext = np.ptp(v @ r.T, 0)
        assert np.allclose(ext / ext.max(), want, atol=0.02), (o.id, ext / ext.max(), want)


def test_capped_samples_budget():
    from objascale.plan import capped_samples

    assert capped_samples(128, 4_000_000, 0.0, 16) == 128  # no budget: the plan
    assert capped_samples(128, 4_000_000, 16.0, 16) == 16  # 16 Mpx-samples over 4 MP: 4, floored at samples_min
    assert capped_samples(128, 500_000, 16.0, 16) == 32
    assert capped_samples(20, 10_000, 16.0, 16) == 20  # a small region keeps the planned count
    assert capped_samples(8, 4_000_000, 16.0, 16) == 8  # never above the plan
