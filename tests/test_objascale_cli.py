"""ObjaScale without rendering: CLI truthfulness, config validation, object frames, file modes, temp files, I/O
failures, the appendable HDF5 export."""
from __future__ import annotations

import errno
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from objascale.assets.objects import ObjectAsset, local_objects
from objascale.assets.selection import select_objects
from objascale.cli import build_parser, effective_settings, main
from objascale.config import ConfigError, area_floor_range, build_config

CUBE = "".join(f"v {x} {y} {z}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)) + "f 1 2 4 3\nf 5 7 8 6\n"


@pytest.fixture()
def objects_dir(tmp_path):
    root = tmp_path / "my scans"
    for cat in ("plate", "bowl", "cup"):
        (root / cat).mkdir(parents=True)
        (root / cat / f"{cat}.obj").write_text(CUBE)
    return root


def test_no_builtin_hdris_flag_sets_the_option():
    args = build_parser().parse_args(["--out", "x", "--no-builtin-hdris"])
    assert args.no_builtin_hdris is True
    assert build_parser().parse_args(["--out", "x"]).no_builtin_hdris is None  # unset: the preset/config decides


def test_help_shows_the_preset_values():
    text = build_parser().format_help().replace("\n", " ")
    text = " ".join(text.split())
    # mini is applied without --preset: its values are what --help must show
    assert "--num-categories" in text and "(default 7 from --preset mini; --preset paper: 68)" in text
    assert "(default 28 from --preset mini; --preset paper: 10200)" in text
    assert "5.2e-5" in text  # the area floor is documented at --min-pixels


def test_effective_settings_name_the_preset_cut_and_the_area_floor(objects_dir):
    from objascale.plan import Catalog

    cfg = build_config("mini", overrides=dict(object_source="local", object_dir=str(objects_dir), num_categories=2,
                                              area_ratio_min=1e-5, max_side=640, min_side=640))
    objs = local_objects(objects_dir)
    cats, by = select_objects(objs, build_config("mini", overrides=dict(object_source="local", object_dir=str(objects_dir),
                                                                         split="all", num_categories=2)))
    cat = Catalog(cats, by, objs, [], available_categories=3)
    lines = "\n".join(effective_settings(cfg, "mini", cat, {"num_categories": None}))
    assert "2 of 3 categories" in lines and "--preset mini" in lines and "--num-categories 0 renders all" in lines
    assert "area floor" in lines and "--min-pixels 16" in lines
    lo, hi = area_floor_range(cfg)
    assert lo == pytest.approx(16 / 640**2) and hi > lo
    # no floor message when the requested minimum is above it
    cfg2 = build_config("mini", overrides=dict(area_ratio_min=0.01))
    assert "area floor" not in "\n".join(effective_settings(cfg2, "mini", cat, {}))


def test_dataset_name_derived_from_the_source(objects_dir):
    assert build_config("mini").dataset_name == "objascale-mini"
    assert build_config("paper").dataset_name == "objascale"
    assert build_config("mini", overrides=dict(object_source="objaverse")).dataset_name == "objascale-objaverse-mini"
    local = build_config("paper", overrides=dict(object_source="local", object_dir=str(objects_dir) + "/"))
    assert local.dataset_name == "objascale-my-scans"
    assert build_config("mini", overrides=dict(dataset_name="mine")).dataset_name == "mine"


def test_bad_seed_refused_before_anything_is_written(tmp_path, objects_dir):
    out = tmp_path / "ds"
    common = ["--out", str(out), "--object-source", "local", "--object-dir", str(objects_dir), "--split", "all"]
    assert main(common + ["--seed", "-1"]) == 2
    assert not out.exists()
    with pytest.raises(ConfigError, match="seed"):
        build_config("mini", overrides=dict(seed=2**64))
    # the folder still accepts a good seed afterwards (only config.json is checked here: --num-images 0)
    assert main(common + ["--seed", "5", "--num-images", "0"]) == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 5


def test_split_all_uses_every_object(objects_dir):
    objs = local_objects(objects_dir)
    cfg = build_config("mini", overrides=dict(object_source="local", object_dir=str(objects_dir), split="all",
                                              num_categories=0))
    cats, by = select_objects(objs, cfg)
    assert sorted(o.id for v in by.values() for o in v) == sorted(o.id for o in objs)
    build_config("mini", overrides=dict(eval_fraction=1.0))  # every object in eval: accepted


def test_manifest_frame_columns(tmp_path, objects_dir):
    man = tmp_path / "m.csv"
    man.write_text("path,category,up_axis,units,rotation\nplate/plate.obj,plate,Z,cm,0 0 90\n"
                   "bowl/bowl.obj,bowl,y,,\ncup/cup.obj,cup,,,\n")
    by = {o.category: o for o in local_objects(objects_dir, man)}
    assert by["plate"].up_axis == "Z" and by["plate"].scale_to_m == 0.01
    np.testing.assert_allclose(np.reshape(by["plate"].frame_rotation, (3, 3)), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    assert by["bowl"].up_axis == "Y" and by["cup"].up_axis == "" and by["cup"].frame_rotation == ()
    assert ObjectAsset.from_dict(by["plate"].to_dict()) == by["plate"]
    js = tmp_path / "m.json"
    js.write_text(json.dumps([{"path": "cup/cup.obj", "category": "cup", "scale_to_m": 0.001, "rotation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}]))
    (o,) = local_objects(objects_dir, js)
    assert o.scale_to_m == 0.001 and len(o.frame_rotation) == 9
    from objascale.assets.objects import ObjectSourceError

    for bad in ("up_axis\nX", "units\nfurlong", "rotation\n1 2"):
        col, val = bad.split("\n")
        man.write_text(f"path,category,{col}\nplate/plate.obj,plate,{val}\n")
        with pytest.raises(ObjectSourceError, match="row 1"):
            local_objects(objects_dir, man)


def test_up_axis_correction_turns_z_up_files_upright():
    from objascale.blender.base import up_axis_correction

    blender_from_obj = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # Blender's OBJ importer: file +Y -> +Z
    file_up_z = np.array([0, 0, 1])
    fixed = np.array(up_axis_correction(".obj", "Z")) @ blender_from_obj @ file_up_z
    assert fixed.tolist() == [0, 0, 1]
    assert np.array_equal(up_axis_correction(".obj", ""), np.eye(3))  # undeclared: the format's convention
    assert np.array_equal(up_axis_correction(".ply", "Z"), np.eye(3))
    assert (np.array(up_axis_correction(".stl", "Y")) @ np.array([0, 1, 0])).tolist() == [0, 0, 1]


def test_obj_missing_mtl_detected(tmp_path):
    from objascale.blender.base import obj_missing_mtllibs

    (tmp_path / "a.obj").write_text("mtllib a.mtl\n" + CUBE)
    assert obj_missing_mtllibs(tmp_path / "a.obj") == ["a.mtl"]
    (tmp_path / "a.mtl").write_text("newmtl x\n")
    assert obj_missing_mtllibs(tmp_path / "a.obj") == []
    (tmp_path / "b.obj").write_text("mtllib my lib.mtl\n" + CUBE)  # a name with a space, absent
    assert obj_missing_mtllibs(tmp_path / "b.obj") == ["my", "lib.mtl"]
    (tmp_path / "my lib.mtl").write_text("")
    assert obj_missing_mtllibs(tmp_path / "b.obj") == []


def test_outputs_follow_the_umask(tmp_path):
    from objascale.io import atomic_path, atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        with atomic_path(tmp_path / "x.hdf5") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "r.json").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "x.hdf5").stat().st_mode & 0o777) == "0o644"


def test_stale_temp_files_removed_at_start(tmp_path, objects_dir):
    out = tmp_path / "ds"
    for d in ("", "images", "records"):
        (out / d).mkdir(parents=True, exist_ok=True)
    stale = [out / ".annotations.json.1a2b3c4d.tmp", out / "images" / ".000003.png.deadbeef.tmp",
             out / "records" / ".000003.json.00ff00ff.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (out / ".tmp" / "objascale-abc").mkdir(parents=True)
    (out / ".tmp" / "objascale-abc" / "index.exr").write_bytes(b"x")
    keep = out / "images" / "notes.tmp.txt"
    keep.write_text("user file")
    assert main(["--out", str(out), "--object-source", "local", "--object-dir", str(objects_dir), "--num-images", "0",
                 "--split", "all"]) == 0
    assert not any(p.exists() for p in stale) and not (out / ".tmp" / "objascale-abc").exists() and keep.exists()


# ----------------------------------------------------------------------------- I/O failures are never permanent
def _fake_result(plan):
    m = np.zeros((plan["height"], plan["width"]), bool)
    m[2:6, 3:9] = True
    return {"reject": None, "rgb": np.zeros((*m.shape, 3), np.uint8), "mask": m, "area_px": int(m.sum()),
            "distance": 1.0, "probes": [], "device": "cpu", "shift": [0, 0], "offset_px": [0, 0], "warnings": [],
            "timings": {}, "camera_location": [0, 0, 0], "camera_rotation_euler": [0, 0, 0], "render": {}}


def _job(tmp_path, n=2):
    from objascale.config import Config

    cfg = build_config("mini")
    plan = {"index": 0, "attempt": 0, "seed": 1, "render_seed": 1, "category": "c", "width": 16, "height": 12,
            "object": {"id": "t:o", "source": "t", "name": "o", "license": "CC0-1.0", "attribution": "", "path": "/x"},
            "hdri": {}, "hdri_rotation_deg": 0, "hdri_strength": 1, "area_ratio_planned": 0.1, "area_px_planned": 19,
            "camera": {}, "pose": {}, "distractors": []}
    items = [{"index": i, "plans": [dict(plan, index=i)]} for i in range(n)]
    job = tmp_path / "job.json"
    out = tmp_path / "ds"
    job.write_text(json.dumps({"out": str(out), "config": cfg.to_dict(), "items": items, "tmp_dir": str(out / ".tmp")}))
    assert isinstance(Config(**cfg.to_dict()), Config)
    return job, out


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_worker_io_failure_leaves_the_image_pending(tmp_path, monkeypatch, capsys, err):
    from objascale.blender import worker
    from objascale.io import Layout

    job, out = _job(tmp_path)
    monkeypatch.setattr(worker, "render_attempt", lambda plan, *a, **k: _fake_result(plan))
    import objascale.io as oio

    real = oio.atomic_write_bytes

    def failing(path, data):
        if Path(path).parent.name == "images" and Path(path).name.startswith("000000"):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, data)

    monkeypatch.setattr(oio, "atomic_write_bytes", failing)
    rc = worker.main([str(job)])
    said = capsys.readouterr().out
    lay = Layout(out)
    assert lay.status(0) == "pending" and not lay.skip_path(0).exists()  # never a permanent skip
    if err == errno.ENOSPC:  # disk full stops the run: the next image is not attempted
        assert rc == 3 and "@@FATAL" in said and lay.status(1) == "pending"
    else:  # another I/O error: retry on the next run, go on with the chunk
        assert rc == 0 and "@@RETRY 0" in said and lay.status(1) == "done"


def test_runner_keeps_the_image_in_progress_pending_on_fatal(tmp_path, monkeypatch, objects_dir):
    """The worker reports disk full while image 0 is in progress: the runner must not mark it skipped."""
    from objascale import runner
    from objascale.io import Layout

    pkg = tmp_path / "fakeworker"
    pkg.mkdir()
    (pkg / "diskfull_worker.py").write_text(textwrap.dedent("""
        import sys
        print("@@START 0", flush=True)
        print("@@FATAL cannot write image 0: No space left on device", flush=True)
        sys.exit(3)
    """))
    monkeypatch.setenv("PYTHONPATH", str(pkg) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(runner.ChunkRunner, "worker_module", "diskfull_worker")
    out = tmp_path / "ds"
    rc = main(["--out", str(out), "--object-source", "local", "--object-dir", str(objects_dir), "--num-images", "2",
               "--split", "all", "--chunk-size", "2"])
    assert rc == 3
    lay = Layout(out)
    assert lay.status(0) == "pending" and lay.status(1) == "pending"
    assert json.loads((out / "manifest.json").read_text())["counts"]["skipped"] == 0 if (out / "manifest.json").exists() else True


# ----------------------------------------------------------------------------- HDF5: appendable shards
def _fake_dataset(root: Path, n: int, offset: int):
    from PIL import Image  # noqa: F401

    from objascale.io import Layout, atomic_write_json, encode_image
    from segcore.prompt import Prompt

    lay = Layout(root)
    for i in range(n):
        m = np.zeros((20, 30), bool)
        m[2 + i:9 + i, 4:12 + offset] = True
        lay.images.mkdir(parents=True, exist_ok=True)
        lay.masks.mkdir(parents=True, exist_ok=True)
        lay.image_path(i, "png").write_bytes(encode_image(np.full((20, 30, 3), 40 * i + offset, np.uint8), "png"))
        lay.mask_path(i).write_bytes(encode_image((m * 255).astype(np.uint8), "png"))
        b = Prompt.from_mask(m).box_xyxy.tolist()
        atomic_write_json(lay.record_path(i), {
            "index": i, "file_name": f"images/{i:06d}.png", "mask_file": f"masks/{i:06d}.png", "object_license": "CC0-1.0",
            "bbox_xyxy": b, "rho": Prompt.from_mask(m).rho.tolist()})


def test_hdf5_export_is_appendable_two_shard_merge(tmp_path):
    import h5py

    from objascale.export import write_hdf5

    a, b = tmp_path / "a", tmp_path / "b"
    _fake_dataset(a, 3, 0)
    _fake_dataset(b, 2, 5)
    fa, fb = write_hdf5(a, 3, "shard", "eval"), write_hdf5(b, 2, "shard", "eval")
    merged = tmp_path / "merged.hdf5"
    import shutil

    shutil.copy(fa, merged)
    # the standard h5py idiom, as the authors' append scripts use it
    with h5py.File(merged, "a") as dst, h5py.File(fb, "r") as src:
        n_img, n_obj = dst["rgb_images"].shape[0], dst["instance_masks"].shape[0]
        for name in src:
            if not isinstance(src[name], h5py.Dataset):
                continue
            d = dst[name]
            assert d.chunks is not None and d.maxshape[0] is None, name
            data = src[name][:]
            if name == "image_instance_indices":
                data = data + np.array([n_obj, 0])
            elif name == "instance_masks_images":
                data = data + n_img
            n = d.shape[0]
            d.resize(n + len(data), axis=0)
            if h5py.check_vlen_dtype(d.dtype) is bytes or h5py.check_vlen_dtype(d.dtype) is None:
                d[n:] = data
            else:  # vlen uint8 rows one by one (equal-length rows would broadcast as a 2-D array)
                for k, row in enumerate(data):
                    d[n + k] = row
    with h5py.File(merged, "r") as f:
        assert f["rgb_images"].shape == (5,) and f["positions"].shape == (5, 5)
        assert f["image_instance_indices"][3].tolist() == [3, 1] and f["instance_masks_images"][4].tolist() == [4]
        assert [x.decode() for x in f["file_names"][:]] == [f"images/{i:06d}.png" for i in (0, 1, 2, 0, 1)]
        with h5py.File(fb, "r") as g:
            assert bytes(f["instance_masks"][4]) == bytes(g["instance_masks"][1])
            np.testing.assert_array_equal(f["positions"][3:], g["positions"][:])


def test_segcore_merge_files_of_two_exports(tmp_path):
    import h5py

    from objascale.export import write_hdf5
    from segcore.hdf5 import merge_files

    a, b = tmp_path / "a", tmp_path / "b"
    _fake_dataset(a, 2, 0)
    _fake_dataset(b, 2, 0)  # identical shards: equal-length byte rows
    merge_files(tmp_path / "m.hdf5", [write_hdf5(a, 2, "s", "eval"), write_hdf5(b, 2, "s", "eval")])
    with h5py.File(tmp_path / "m.hdf5") as f:
        assert f["rgb_images"].shape == (4,) and bytes(f["rgb_images"][3]) == bytes(f["rgb_images"][1])


# ----------------------------------------------------------------------------- issue 23, round two
def test_r2_item4_relative_out_renders_from_any_folder_and_empty_out_is_refused(tmp_path, monkeypatch, objects_dir):
    """The worker gets an absolute job file, runs in the caller's folder (relative paths as given) and keeps
    Blender's temp folders under the dataset's .tmp/."""
    from objascale import runner

    pkg = tmp_path / "fakeworker"
    pkg.mkdir()
    seen = tmp_path / "seen.json"
    (pkg / "probe_worker.py").write_text(textwrap.dedent(f"""
        import json, os, sys
        job = sys.argv[1]
        json.dump({{"job": job, "exists": os.path.isfile(job), "cwd": os.getcwd(), "tmp": os.environ.get("TMPDIR")}},
                  open({str(seen)!r}, "w"))
        print("@@START 0", flush=True)
        print("@@SKIP 0 probe", flush=True)
    """))
    monkeypatch.setenv("PYTHONPATH", str(pkg) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(runner.ChunkRunner, "worker_module", "probe_worker")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc = main(["--out", "rel/ds", "--object-source", "local", "--object-dir", str(objects_dir), "--num-images", "1",
               "--split", "all"])
    assert rc == 0
    got = json.loads(seen.read_text())
    assert Path(got["job"]).is_absolute() and got["exists"] and got["cwd"] == str(elsewhere)
    assert got["tmp"] == str(elsewhere / "rel" / "ds" / ".tmp")
    before = sorted(os.listdir(elsewhere))
    assert main(["--out", "", "--object-source", "local", "--object-dir", str(objects_dir), "--num-images", "1"]) == 2
    assert sorted(os.listdir(elsewhere)) == before  # nothing rendered into the current folder


def test_r2_item11_status_answers_at_once_for_any_planned_count(tmp_path):
    import subprocess
    import time

    out = tmp_path / "ds"
    (out / "records").mkdir(parents=True)
    (out / "records" / "000001.json").write_text("{}")
    (out / "records" / "000002.skip.json").write_text("{}")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "objascale", "--out", str(out), "--status", "--num-images", "100000000"],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0 and time.time() - t0 < 60
    assert "'done': 1" in p.stdout and "'skipped': 1" in p.stdout and "'pending': 99999998" in p.stdout
    assert not (out / "manifest.json").exists()  # --status reads; it writes nothing


def test_r2_item15_startup_line_says_what_the_split_leaves_out(objects_dir, tmp_path):
    from objascale.plan import Catalog

    for cat in ("mug", "vase", "lamp", "book", "shoe", "ball", "fork"):  # more objects: the split drops some
        for k in range(3):
            (objects_dir / cat).mkdir(exist_ok=True)
            (objects_dir / cat / f"{cat}{k}.obj").write_text(CUBE)
    objs = local_objects(objects_dir)
    cfg = build_config("mini", overrides=dict(object_source="local", object_dir=str(objects_dir), num_categories=0))
    cats, by = select_objects(objs, cfg)
    kept = sum(len(v) for v in by.values())
    lines = "\n".join(effective_settings(cfg, "mini", Catalog(cats, by, objs, [], available_categories=len(cats)), {}))
    assert f"holds {len(objs)} objects in 10 categories" in lines
    assert f"keeps {kept} of them" in lines and f"leaving out {len(objs) - kept}" in lines and "--split all" in lines


def test_r2_item17_missing_mtl_with_a_stem_fallback_is_not_untextured(tmp_path):
    from objascale.blender.base import obj_material_warnings

    (tmp_path / "chair.obj").write_text("mtllib materials_v2.mtl\n" + CUBE)
    assert obj_material_warnings(tmp_path / "chair.obj") == ["missing material library materials_v2.mtl: rendered untextured"]
    (tmp_path / "chair.mtl").write_text("newmtl wood\n")
    (w,) = obj_material_warnings(tmp_path / "chair.obj")
    assert "untextured" not in w and "chair.mtl" in w


def test_r2_item18_area_floor_names_the_frames_it_affects_and_errors_leave_no_folder(tmp_path, objects_dir):
    from objascale.plan import Catalog

    objs = local_objects(objects_dir)
    cfg = build_config("mini", overrides=dict(object_source="local", object_dir=str(objects_dir), split="all",
                                              area_ratio_min=1e-5, min_pixels=4, min_side=320, max_side=1024))
    cats, by = select_objects(objs, cfg)
    lo, hi = area_floor_range(cfg)
    assert lo < 1e-5 < hi  # the largest frames reach the minimum, the small ones do not
    lines = "\n".join(effective_settings(cfg, "mini", Catalog(cats, by, objs, []), {}))
    assert "frames under 400,000 px" in lines and "larger frames reach --area-ratio-min" in lines
    out = tmp_path / "new"
    assert main(["--out", str(out), "--object-source", "local", "--object-dir", str(tmp_path / "missing")]) == 2
    assert not out.exists()


def test_r2_item19_objects_lying_on_their_side_are_warned(tmp_path):
    from objascale.export import up_axis_warnings

    recs = [{"category": "bottle", "object_id": f"b{k}", "object_extent_file_units": [0.3, 0.3, 1.0]} for k in range(3)]
    recs.append({"category": "bottle", "object_id": "y-up", "object_extent_file_units": [0.3, 1.0, 0.3],
                 "object_up_axis": "format default"})
    recs += [{"category": "car", "object_id": f"c{k}", "object_extent_file_units": [2.0, 1.0, 0.7]} for k in range(3)]
    (w,) = up_axis_warnings(recs)
    assert w.startswith("object y-up (bottle)") and "up axis is probably wrong" in w
