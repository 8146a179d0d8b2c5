"""The harness on hostile input (issue 11, items 1–14): nothing silently wrong, nothing crashes, every object counted.

Each test names the item it covers. Datasets are made here, tiny; models are the model-free oracle-box or small
fakes, so the whole file runs in seconds.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from benchmark.cli import main as cli_main
from benchmark.runner import OUTCOMES, ConfigError, RunConfig, Runner
from segcore.datasets import (DatasetError, ItemError, Selection, dataset_fingerprint, escape_spec, open_dataset,
                              parse_spec, select_counted, split_specs)
from segcore.image import check_image, decode_image_bytes, read_image_file
from segcore.records import read_rows
from segcore.segmenter import PhaseTimer

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers

def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": r["counts"].decode("ascii")}


def box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_coco(root, images, anns, image_dir="images"):
    """images: [(image dict, pixel array or None = no file)]; anns: annotation dicts (ids, image ids given)."""
    root = Path(root)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    for img, pixels in images:
        if pixels is not None:
            Image.fromarray(pixels).save(root / image_dir / img["file_name"])
    data = {"images": [img for img, _ in images], "annotations": anns, "categories": [{"id": 1, "name": "x"}]}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def ann(aid, image_id, seg, **kw):
    return {"id": aid, "image_id": image_id, "category_id": 1, "iscrowd": 0, "segmentation": seg, **kw}


def good_dataset(root, n=2):
    """n images of 20×30, one box object each."""
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i in range(1, n + 1):
        images.append(({"id": i, "file_name": f"{i}.png", "width": 30, "height": 20}, rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)))
        anns.append(ann(i, i, rle(box_mask(20, 30, 2 + i, 9 + i, 3, 14))))
    return write_coco(root, images, anns)


def cli(tmp_path, *args, model="oracle-box"):
    return cli_main(["--model", model, "--results", str(tmp_path / "r"), "--no-progress", "--no-latest", "--warmup", "0", *args])


def no_run_json(tmp_path):
    return not list((tmp_path / "r").rglob("run.json")) if (tmp_path / "r").exists() else True


def counts_add_up(counters):
    return counters.accounted() == counters.objects_in_files


class ThresholdSegmenter:
    """Bright pixels (> 128 in channel 0) inside the prompt's box: its IoU depends on the image being decoded right."""

    name, weights_id, num_parameters = "threshold", "fixed", 0

    def __init__(self):
        self.timings, self.timer = {}, PhaseTimer()

    def set_image(self, image):
        self.bright = np.asarray(image)[:, :, 0] > 128

    def predict(self, prompts):
        out = []
        for p in prompts:
            x0, y0, x1, y1 = p.box_xyxy.astype(int)
            m = np.zeros_like(self.bright)
            m[y0:y1, x0:x1] = self.bright[y0:y1, x0:x1]
            out.append(m)
        return out


# ---------------------------------------------------------------- 1. 16-bit images

def test_item1_16bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    h, w = 20, 30
    grey16 = np.full((h, w), 12000, np.uint16)  # dark background: 12000/65535 → 47
    grey16[5:12, 6:20] = 50000  # bright object in two parts: → 195
    grey16[14:18, 24:28] = 50000
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    img = read_image_file(tmp_path / "g16.png")
    assert img.dtype == np.uint8 and img.shape == (h, w, 3)
    np.testing.assert_array_equal(img[:, :, 0], np.round(grey16 / 65535 * 255).astype(np.uint8))
    assert img[0, 0, 0] == 47 and img[6, 7, 1] == 195  # clipping would make both 255
    assert decode_image_bytes((tmp_path / "g16.png").read_bytes(), "x")[0, 0, 0] == 47
    # float images have no stated range: refused with the reason, never guessed
    Image.fromarray(grey16.astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ItemError, match="floating-point"):
        read_image_file(tmp_path / "f.tif")
    # through the runner: a model that looks at the pixels scores the object right (IoU 1, not the box's)
    root = write_coco(tmp_path / "ds", [({"id": 1, "file_name": "g16.png", "width": w, "height": h}, None)],
                      [ann(1, 1, rle(box_mask(h, w, 5, 12, 6, 20) | box_mask(h, w, 14, 18, 24, 28)))])
    os.replace(tmp_path / "g16.png", root / "images" / "g16.png")
    c = Runner(RunConfig(models=[ThresholdSegmenter()], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    (row,) = read_rows(tmp_path / "run")
    assert c.ok == 1 and row["iou"] == 1.0  # read as all-white, the whole 13×22 box would be predicted: IoU 0.40


# ---------------------------------------------------------------- 2. duplicated ids

@pytest.mark.parametrize("what", ["annotation", "image"])
def test_item2_duplicated_ids_stop_at_open_naming_them(tmp_path, what):
    root = good_dataset(tmp_path / "ds", n=3)
    data = json.loads((root / "annotations.json").read_text())
    if what == "annotation":
        data["annotations"][2]["id"] = 2
    else:
        data["images"][2]["id"] = 2
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"duplicated {what} id\(s\) \['2'\]"):
        open_dataset(str(root))
    assert cli(tmp_path, "--data", str(root)) == 2 and no_run_json(tmp_path)


# ---------------------------------------------------------------- 3. area filter on the decoded mask

def test_item3_area_filter_uses_the_mask_not_the_json_area(tmp_path):
    h, w = 400, 480  # 192000 px
    small = box_mask(h, w, 100, 105, 100, 106)  # 30 px = 0.00015625 of the image
    medium = box_mask(h, w, 10, 60, 10, 60)  # 2500 px = 1.3 %
    big = box_mask(h, w, 0, 300, 0, 480)  # 75 %
    images = [({"id": 1, "file_name": "a.png", "width": w, "height": h}, np.zeros((h, w, 3), np.uint8))]
    anns = [ann(1, 1, rle(small), area=40.0),  # json area a polygon would give: 40 px, over the bound
            ann(2, 1, rle(medium), area=float(h * w)),  # a third-party file: area = the whole image
            ann(3, 1, rle(big), area=10.0)]  # wrong the other way
    root = write_coco(tmp_path / "ds", images, anns)
    ds = open_dataset(str(root))
    pick = lambda **kw: select_counted(ds, Selection(**kw))
    chosen, counts = pick(max_area_ratio=0.00016)
    assert [o.object_id for _, objs in chosen for o in objs] == ["1"] and counts == {"area_filtered": 2}
    chosen, counts = pick(max_area_ratio=0.5)
    assert [o.object_id for _, objs in chosen for o in objs] == ["1", "2"] and counts == {"area_filtered": 1}
    chosen, _ = pick(min_area_ratio=0.5)
    assert [o.object_id for _, objs in chosen for o in objs] == ["3"]
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0,
                         progress=False, max_area_ratio=0.5)).run()
    assert c.ok == 2 and c.area_filtered == 1 and counts_add_up(c)


# ---------------------------------------------------------------- 4. every object in exactly one counter

def hostile_counting_dataset(root):
    h, w = 20, 30
    px = np.full((h, w, 3), 90, np.uint8)
    images = [({"id": 1, "file_name": "a.png", "width": w, "height": h}, px),
              ({"id": 2, "file_name": "missing.png", "width": w, "height": h}, None)]  # no file
    anns = [ann(1, 1, rle(box_mask(h, w, 2, 8, 2, 9))),  # ok
            ann(2, 1, rle(box_mask(h, w, 0, 20, 0, 30))),  # whole image: filtered by --max-area 0.5
            ann(3, 1, rle(box_mask(h, w, 3, 9, 12, 20)), iscrowd=1),  # crowd
            ann(4, 1, rle(np.zeros((h, w), bool))),  # empty mask
            ann(5, 99, rle(box_mask(h, w, 2, 8, 2, 9))),  # image 99 is not in the file
            ann(6, 2, rle(box_mask(h, w, 2, 8, 2, 9))),  # its image file is missing: fails
            ann(7, 1, {"size": [h + 1, w], "counts": rle(box_mask(h, w, 2, 8, 2, 9))["counts"]})]  # wrong RLE size: fails
    return write_coco(root, images, anns)


def test_item4_every_object_lands_in_exactly_one_counter_and_the_report_shows_them(tmp_path):
    root = hostile_counting_dataset(tmp_path / "ds")
    rc = cli(tmp_path, "--data", str(root), "--run", "x", "--max-area", "0.5", model="oracle-box,noop")
    assert rc == 0
    summary = json.loads((tmp_path / "r" / "x" / "summary-0of1.json").read_text())
    per = summary["by_model_dataset"]
    for where in ("oracle-box | ds", "noop | ds"):
        d = per[where]
        assert d == {"objects_in_files": 7, "ok": 1, "failed": 2, "empty_masks_skipped": 1, "area_filtered": 1,
                     "crowd_skipped": 1, "image_not_in_file": 1}, d
    assert summary["objects_in_files"] == 14 and summary["counters_add_up"] is True
    assert sum(summary[k] for k in OUTCOMES) == 14
    rows = read_rows(tmp_path / "r" / "x")
    assert len(rows) == 2 * 3  # ok and failed objects have records; skipped ones are counted only
    html = (tmp_path / "r" / "x" / "report.html").read_text()
    for label in ("Crowd skipped", "Image not in file", "Filtered by area", "Empty masks skipped"):
        assert label in html
    # resume: the same objects move to already_done, the sum still holds
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "r" / "x"), warmup=0,
                         progress=False, max_area_ratio=0.5)).run()
    assert c.already_done == 3 and c.ok == 0 and counts_add_up(c)
    # shards and --limit: other_shard and not_sampled close the sum
    for k in range(2):
        c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / f"s{k}"), warmup=0,
                             progress=False, shard=(k, 2), limit=2, seed=3)).run()
        assert counts_add_up(c) and c.not_sampled == 3  # 5 indexed objects, 2 sampled


# ---------------------------------------------------------------- 5. fingerprint of the contents

def test_item5_fingerprint_sees_an_edit_of_the_same_length_and_caches_digests(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path / "cache"))
    root = good_dataset(tmp_path / "ds")
    img = root / "images" / "1.png"
    old = os.stat(img)
    os.utime(img, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))  # old enough to be cached
    fp1 = dataset_fingerprint(str(root))
    cache = json.loads((tmp_path / "cache" / "fingerprints" / "file-digests.json").read_text())
    assert str(img.resolve()) in cache
    assert dataset_fingerprint(str(root)) == fp1
    st = os.stat(img)
    data = bytearray(img.read_bytes())
    data[-20] ^= 0xFF  # same length
    img.write_bytes(bytes(data))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime too: only the contents (and ctime) changed
    assert img.stat().st_size == st.st_size
    assert dataset_fingerprint(str(root)) != fp1


# ---------------------------------------------------------------- 6. HDF5 masks: 0/1 PNGs and raw arrays

def _authors_like_hdf5(path, images, masks, raw: bool, ones: bool = False):
    """The authors' layout with masks as 0/1 PNGs (ones) or as raw (N, 1, H, W) arrays and raw (N, H, W, 3) images."""
    import io

    import h5py

    with h5py.File(path, "w") as f:
        n = len(images)
        f["image_instance_indices"] = np.array([[i, 1] for i in range(n)], np.int64)
        f["coco_image_ids"] = np.arange(n, dtype=np.int64) + 100
        if raw:
            f["rgb_images"] = np.stack(images)
            f["instance_masks"] = np.stack(masks)[:, None].astype(np.uint8)
            return
        vb = h5py.vlen_dtype(np.dtype("uint8"))
        imgs = f.create_dataset("rgb_images", (n,), dtype=vb)
        ms = f.create_dataset("instance_masks", (n,), dtype=vb)
        for i, (im, m) in enumerate(zip(images, masks)):
            b = io.BytesIO()
            Image.fromarray(im).save(b, format="PNG")
            imgs[i] = np.frombuffer(b.getvalue(), np.uint8)
            b = io.BytesIO()
            Image.fromarray(m.astype(np.uint8) * (1 if ones else 255)).save(b, format="PNG")
            ms[i] = np.frombuffer(b.getvalue(), np.uint8)


@pytest.mark.parametrize("kind", ["png01", "raw"])
def test_item6_hdf5_masks_as_01_pngs_and_raw_arrays(tmp_path, kind):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 24, 3), dtype=np.uint8) for _ in range(2)]
    masks = [box_mask(16, 24, 2, 9, 3, 11), box_mask(16, 24, 5, 15, 1, 20)]
    path = tmp_path / f"{kind}.hdf5"
    _authors_like_hdf5(path, images, masks, raw=kind == "raw", ones=True)
    ds = open_dataset(str(path))
    for e, m, im in zip(ds.index(), masks, images):
        got = ds.load_masks(e, [o.object_id for o in e.objects])
        np.testing.assert_array_equal(got[e.objects[0].object_id], m)
        np.testing.assert_array_equal(ds.load_image(e), im)
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(path)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    assert c.ok == 2 and c.empty_masks_skipped == 0 and all(r["iou"] == 1.0 for r in read_rows(tmp_path / "run"))


# ---------------------------------------------------------------- 8. 1×N images

def test_item8_images_with_a_one_pixel_side_fail_clearly(tmp_path):
    for shape in ((1, 5, 3), (5, 1, 3), (1, 1, 3)):
        with pytest.raises(ValueError, match="too small"):
            check_image(np.zeros(shape, np.uint8))
    check_image(np.zeros((2, 2, 3), np.uint8))
    images = [({"id": 1, "file_name": "row.png", "width": 5, "height": 1}, np.full((1, 5, 3), 200, np.uint8)),
              ({"id": 2, "file_name": "ok.png", "width": 30, "height": 20}, np.zeros((20, 30, 3), np.uint8))]
    anns = [ann(1, 1, rle(box_mask(1, 5, 0, 1, 1, 3))), ann(2, 2, rle(box_mask(20, 30, 2, 8, 2, 9)))]
    root = write_coco(tmp_path / "ds", images, anns)
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    rows = {r["object_id"]: r for r in read_rows(tmp_path / "run")}
    assert c.ok == 1 and c.failed == 1 and "5×1 pixels is too small" in rows["1"]["reason"]


# ---------------------------------------------------------------- 9. NaN / 1e8 polygon coordinates

def test_item9_nan_and_huge_polygon_coordinates_fail_only_their_object(tmp_path):
    """Masks are first decoded under a 3 GB address-space limit in a child process: before the fix the 1e8 polygon
    allocated ~22 GB (killed, or a segfault under ulimit -v). Then the run: the bad objects fail, the good one runs."""
    h, w = 20, 30
    images = [({"id": 1, "file_name": "a.png", "width": w, "height": h}, np.zeros((h, w, 3), np.uint8))]
    anns = [ann(1, 1, [[1, 1, 1e8, 1, 1e8, 5, 1, 5]]), ann(2, 1, [[1, 1, float("nan"), 1, 5, 5]]),
            ann(3, 1, [[1, 1, float("inf"), 1, 5, 5]]), ann(4, 1, [[2, 2, 9, 2, 9, 8, 2, 8]]),
            ann(5, 1, [[2, 2, "x", 2, 9, 8]]), ann(6, 1, [[-1e7, 1, 5, 1, 5, 5]])]
    root = write_coco(tmp_path / "ds", images, anns)
    code = textwrap.dedent(f"""
        import resource, json
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        import faulthandler; faulthandler.dump_traceback_later(30, exit=True)
        from segcore.datasets import open_dataset
        ds = open_dataset({str(root)!r})
        (e,) = ds.index()
        masks = ds.load_masks(e, [o.object_id for o in e.objects])
        print(json.dumps({{k: str(v) if isinstance(v, Exception) else int(v.sum()) for k, v in masks.items()}}))
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert "far outside" in got["1"] and "non-finite" in got["2"] and "non-finite" in got["3"]
    assert "not a list of numbers" in got["5"] and "far outside" in got["6"] and got["4"] == 7 * 6
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    assert c.ok == 1 and c.failed == 5 and counts_add_up(c)
    assert {r["object_id"] for r in read_rows(tmp_path / "run") if r["status"] == "failed"} == {"1", "2", "3", "5", "6"}


# ---------------------------------------------------------------- 10. image without width/height

def test_item10_image_without_size_takes_it_from_the_file_or_fails_alone(tmp_path):
    h, w = 20, 30
    images = [({"id": 1, "file_name": "a.png"}, np.zeros((h, w, 3), np.uint8)),  # no width/height: read the header
              ({"id": 2, "file_name": "gone.png"}, None),  # no size and no file: this image fails
              ({"id": 3, "file_name": "c.png", "width": "thirty", "height": None}, np.zeros((h, w, 3), np.uint8))]
    anns = [ann(1, 1, [[2, 2, 9, 2, 9, 8, 2, 8]]), ann(2, 2, [[2, 2, 9, 2, 9, 8, 2, 8]]), ann(3, 3, rle(box_mask(h, w, 1, 5, 1, 5)))]
    root = write_coco(tmp_path / "ds", images, anns)
    for _ in range(2):  # a rerun too (the failed image is retried and fails again; the run still has successes)
        rc = cli(tmp_path, "--data", str(root), "--run", "x", "--retry-failed", "--no-report")
        assert rc == 0
    rows = {r["object_id"]: r for r in read_rows(tmp_path / "r" / "x")}
    assert rows["1"]["status"] == "ok" and rows["1"]["width"] == w and rows["3"]["status"] == "ok"
    assert rows["2"]["status"] == "failed" and "file not found" in rows["2"]["reason"]


# ---------------------------------------------------------------- 11. configuration errors: exit 2, no run.json

def _garbage_json(tmp_path, content: bytes):
    root = good_dataset(tmp_path / "ds")
    (root / "annotations.json").write_bytes(content)
    return str(root)


@pytest.mark.parametrize("case", ["binary", "empty", "list", "no-annotations", "image-without-id"])
def test_item11_unreadable_or_non_coco_json_is_a_config_error(tmp_path, capsys, case):
    content = {"binary": b"\x89PNG\x00\xff garbage", "empty": b"", "list": b"[1, 2]",
               "no-annotations": b'{"images": [], "info": {}}',
               "image-without-id": b'{"images": [{"file_name": "a.png"}], "annotations": []}'}[case]
    rc = cli(tmp_path, "--data", _garbage_json(tmp_path, content))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "Traceback" not in err and no_run_json(tmp_path)


@pytest.mark.parametrize("fname,content", [("g.ckpt", os.urandom(300)), ("e.pth", b""), ("g.onnx", b"\x08\x07garbage"),
                                           ("t.ckpt", b"not a checkpoint at all")])
def test_item11_garbage_weights_through_the_cli_are_a_config_error(tmp_path, capsys, fname, content):
    wfile = tmp_path / fname
    wfile.write_bytes(content)
    rc = cli(tmp_path, "--data", str(good_dataset(tmp_path / "ds")), "--weights", str(wfile), model="flip-tiny")
    err = capsys.readouterr().err
    assert rc == 2 and fname in err and "Traceback" not in err and no_run_json(tmp_path)


def test_item11_empty_selection_is_a_config_error(tmp_path, capsys):
    root = good_dataset(tmp_path / "ds")
    for args, msg in ((["--limit", "0"], "--limit 0"), (["--min-area", "0.9"], "selection is empty"),
                      ([], "no image of split 'evall'")):
        spec = f"{root}#evall" if not args else str(root)
        assert cli(tmp_path, "--data", spec, *args) == 2
        assert msg in capsys.readouterr().err
    assert no_run_json(tmp_path)
    with pytest.raises(ConfigError, match="area filtered: 2"):
        Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "run"), min_area_ratio=0.9)).run()
    assert not (tmp_path / "run").exists()
    # a shard that happens to get no image is not an error: the selection as a whole is not empty
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "s"), shard=(2, 3),
                         warmup=0, progress=False)).run()
    assert c.ok == 0 and c.other_shard == 2 and counts_add_up(c)


# ---------------------------------------------------------------- 12. nothing succeeded: exit 1 with the reason

def test_item12_a_run_where_every_object_failed_exits_nonzero(tmp_path, capsys):
    root = good_dataset(tmp_path / "ds")
    (tmp_path / "wrong").mkdir()
    rc = cli(tmp_path, "--data", f"{root / 'annotations.json'}::{tmp_path / 'wrong'}", "--run", "x")
    err = capsys.readouterr().err
    assert rc == 1 and "nothing succeeded" in err and "check the image folder" in err
    assert cli(tmp_path, "--data", f"{root / 'annotations.json'}::{tmp_path / 'wrong'}", "--run", "x") == 1  # rerun: still 1
    assert "failed in earlier invocations" in capsys.readouterr().err
    assert (tmp_path / "r" / "x" / "report.html").is_file()  # the failures are still reported
    assert cli(tmp_path, "--data", str(root), "--run", "y") == 0  # some success: 0
    assert cli(tmp_path, "--data", str(root), "--run", "y") == 0  # all already done: nothing to do is fine


# ---------------------------------------------------------------- 13. = # , in paths: escapes

def test_item13_data_spec_grammar_and_escapes():
    assert parse_spec("coco=/d/a=b/v.json::/i#x=y") == ("coco", Path("/d/a=b/v.json"), None, "/i#x=y")
    assert parse_spec(r"a\=b.json") == (None, Path("a=b.json"), None, None)
    assert parse_spec("a=b.json") == ("a", Path("b.json"), None, None)
    assert parse_spec("/d/run#3/val.json") == (None, Path("/d/run#3/val.json"), None, None)
    assert parse_spec("n=/d/objs#train") == ("n", Path("/d/objs"), "train", None)
    assert parse_spec(r"/d/objs\#train") == (None, Path("/d/objs#train"), None, None)
    assert parse_spec(r"/x\:\:y.json::/img") == (None, Path("/x::y.json"), None, "/img")
    assert split_specs(r"a=/p\,q.json::/i\,j,b=/r.hdf5") == [r"a=/p\,q.json::/i\,j", "b=/r.hdf5"]
    weird = r"/data/we=ird#1,x::y\z/v.json"
    assert parse_spec(escape_spec(weird)) == (None, Path(weird), None, None)
    assert split_specs(escape_spec(weird) + "," + escape_spec(weird)) == [escape_spec(weird)] * 2


def test_item13_paths_with_equals_hash_and_comma_run_end_to_end(tmp_path, monkeypatch):
    base = tmp_path / "a=b#c,d"
    root = good_dataset(base)
    imgs = base / "im=g#1,2"
    os.replace(root / "images", imgs)
    json_path = root / "annotations.json"
    spec = f"mine={escape_spec(json_path)}::{escape_spec(imgs)}"
    assert cli(tmp_path, "--data", spec, "--run", "x", "--no-report") == 0
    rows = read_rows(tmp_path / "r" / "x")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"} and {r["dataset"] for r in rows} == {"mine"}
    monkeypatch.chdir(tmp_path)
    os.replace(json_path, tmp_path / "x=y.json")
    with pytest.raises(DatasetError, match=r"exists: escape"):  # unescaped, x= is a NAME: the message says what to do
        open_dataset("x=y.json")
    assert open_dataset(r"x\=y.json::" + escape_spec(imgs)).name == "x=y"


# ---------------------------------------------------------------- 14. LVIS: every path tried is named

def test_item14_lvis_missing_image_names_every_path_tried(tmp_path):
    (tmp_path / "coco").mkdir()
    data = {"images": [{"id": 42, "width": 12, "height": 10, "coco_url": "http://images.cocodataset.org/val2017/000000000042.jpg"}],
            "annotations": [{"id": 1, "image_id": 42, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]}],
            "categories": [{"id": 3, "name": "x"}]}
    (tmp_path / "lvis.json").write_text(json.dumps(data))
    ds = open_dataset(f"{tmp_path / 'lvis.json'}::{tmp_path / 'coco'}")
    (e,) = ds.index()
    with pytest.raises(ItemError) as err:
        ds.load_image(e)
    msg = str(err.value)
    for p in (tmp_path / "coco" / "000000000042.jpg", tmp_path / "coco" / "val2017" / "000000000042.jpg",
              tmp_path / "000000000042.jpg", tmp_path / "val2017" / "000000000042.jpg"):
        assert str(p) in msg
    assert "coco_url http://images.cocodataset.org/val2017/000000000042.jpg" in msg


# ================================================================= round two (issue 23)
# Each test names the issue-23 item it covers; each fails on the code before the fix.

def _run_with_records(tmp_path, name="run"):
    """A finished oracle-box run under tmp_path/r/<name> (2 objects), without report."""
    root = good_dataset(tmp_path / "ds")
    assert cli(tmp_path, "--data", str(root), "--run", name, "--no-report") == 0
    return root, tmp_path / "r" / name


def test_r2_item1_latest_never_deletes_a_real_folder(tmp_path):
    from benchmark.report import make_report

    root, run = _run_with_records(tmp_path)
    real = tmp_path / "r" / "latest"
    real.mkdir()
    (real / "precious.txt").write_text("user data")
    make_report(run)  # latest is a real folder: left as it is
    assert (real / "precious.txt").read_text() == "user data" and not real.is_symlink()
    assert (run / "report.html").is_file()
    real2 = tmp_path / "copied" / "latest"  # a run folder that is itself called latest (a tree copied without links)
    real2.mkdir(parents=True)
    for f in run.iterdir():
        if f.is_file():
            (real2 / f.name).write_bytes(f.read_bytes())
    import shutil
    shutil.copytree(run / "records", real2 / "records")
    assert subprocess.run([sys.executable, "-m", "benchmark.report", str(real2), "--merge"], cwd=ROOT, capture_output=True).returncode == 0
    assert (real2 / "records.csv").is_file() and (real2 / "run.json").is_file()
    # --run latest and --run . are refused before any work; nothing is deleted
    for bad in ("latest", ".", "..", "a/b"):
        assert cli(tmp_path, "--data", str(root), "--run", bad) == 2, bad
    assert (real / "precious.txt").is_file() and (run / "run.json").is_file()
    # report of results/latest when it is our symlink: the run stays, the link still points at it
    real.joinpath("precious.txt").unlink()
    real.rmdir()
    make_report(run)
    assert real.is_symlink() and real.resolve() == run.resolve()
    make_report(real)
    assert real.is_symlink() and real.resolve() == run.resolve() and (run / "run.json").is_file()


def test_r2_item2_merge_uses_unique_temps_and_a_lock(tmp_path):
    from segcore.records import merge, run_lock

    _, run = _run_with_records(tmp_path)
    (run / ".records.csv.tmp").mkdir()  # a fixed temp name in use (another merger's): the write must not need it
    assert merge(run) == 2 and len(read_rows(run)) == 2
    # a merge waits for the run's lock held by another process's merge
    lock = run_lock(run)
    lock.acquire()
    try:
        p = subprocess.Popen([sys.executable, "-m", "benchmark.report", str(run), "--merge", "--no-latest"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        import time
        time.sleep(3.0)
        assert p.poll() is None  # still waiting
    finally:
        lock.release()
    assert p.wait(timeout=300) == 0


def test_r2_item2_concurrent_merges_keep_every_row(tmp_path):
    from segcore.records import make_row, write_csv

    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    for k in range(9):  # 27 rows in 9 part files, as three shards would leave them
        rows = [make_row(model="m", weights_id="w", num_parameters=1, dataset="d", image_id=str(k), object_id=f"{k}-{j}",
                         status="ok", iou=0.5, area_px=10, area_ratio=0.1, width=10, height=10) for j in range(3)]
        write_csv(run / "records" / f"part-s{k}-{k:06d}.csv", rows)
    procs = [subprocess.Popen([sys.executable, "-m", "benchmark.report", str(run), "--merge", "--no-latest"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert len(read_rows(run)) == 27 and not list((run / "records").glob("part-*.csv"))
    assert not [p for p in run.rglob("*.tmp")]


SLOW_RUN = textwrap.dedent("""
    import sys, time
    from segcore import registry
    from benchmark.models import OracleBoxSegmenter
    class Slow(OracleBoxSegmenter):
        name = "slow"
        def set_image(self, image):
            time.sleep(0.15)
            super().set_image(image)
    registry.register(registry.ModelEntry("slow", "", lambda entry, weights=None, **_: Slow()))
    from benchmark.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_r2_item3_a_signal_flushes_buffered_rows_and_says_how_to_resume(tmp_path, sig):
    import signal
    import time

    h, w = 20, 30
    rng = np.random.default_rng(0)
    root = write_coco(tmp_path / "ds", [({"id": i, "file_name": f"{i}.png", "width": w, "height": h},
                                         rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for i in range(1, 61)],
                      [ann(i, i, rle(box_mask(h, w, 2 + i % 9, 9 + i % 9, 3, 14))) for i in range(1, 61)])
    p = subprocess.Popen([sys.executable, "-c", SLOW_RUN, "--model", "slow", "--data", str(root), "--results",
                          str(tmp_path / "r"), "--run", "x", "--no-progress", "--warmup", "0", "--no-report"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while not (tmp_path / "r" / "x" / "run.json").is_file() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # ~13 objects done, all still in the writer's buffer (flush every 200)
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    rows = read_rows(tmp_path / "r" / "x")
    assert len(rows) >= 5, (len(rows), err)
    # the rerun resumes: every object ends with one record
    rc = subprocess.run([sys.executable, "-c", SLOW_RUN, "--model", "slow", "--data", str(root), "--results",
                         str(tmp_path / "r"), "--run", "x", "--no-progress", "--warmup", "0", "--no-report"],
                        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode
    assert rc == 0 and len(read_rows(tmp_path / "r" / "x")) == 60


def _jpeg_bytes(seed=0, h=120, w=160):
    import io
    rng = np.random.default_rng(seed)
    img = np.asarray(Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h)))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return img, buf.getvalue()


def test_r2_item5_damaged_jpeg_fails_the_image_with_the_reason(tmp_path):
    _, good = _jpeg_bytes()
    bad = bytearray(good)
    mid = len(bad) // 2
    bad[mid:mid + 2048] = bytes(2048)  # zeroed inside the entropy-coded data
    cut = bytes(good[: len(good) * 2 // 3]) + b"\xff\xd9"  # a cut segment
    for data in (bytes(bad), cut):
        with pytest.raises(ItemError, match="Corrupt JPEG data"):
            decode_image_bytes(data, "x")
    decode_image_bytes(good, "x")  # intact data decodes
    h, w = 120, 160
    images = [({"id": 1, "file_name": "good.jpg", "width": w, "height": h}, None),
              ({"id": 2, "file_name": "bad.jpg", "width": w, "height": h}, None)]
    root = write_coco(tmp_path / "ds", images, [ann(1, 1, rle(box_mask(h, w, 10, 50, 10, 60))),
                                                  ann(2, 2, rle(box_mask(h, w, 10, 50, 10, 60)))])
    (root / "images" / "good.jpg").write_bytes(good)
    (root / "images" / "bad.jpg").write_bytes(bytes(bad))
    c = Runner(RunConfig(models=["oracle-box"], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    by = {r["object_id"]: r for r in read_rows(tmp_path / "run")}
    assert c.ok == 1 and c.failed == 1 and by["2"]["status"] == "failed" and "Corrupt JPEG data" in by["2"]["reason"]


def test_r2_item5_hdf5_rows_carry_a_checksum_the_reader_checks(tmp_path):
    import h5py
    from segcore.datasets import FlipHdf5Dataset, write_flip_hdf5

    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    path = tmp_path / "a.hdf5"
    write_flip_hdf5(path, [img, img], [[box_mask(40, 50, 5, 20, 5, 30)], [box_mask(40, 50, 5, 20, 5, 30)]])
    with h5py.File(path, "a") as f:
        assert "rgb_images_sha256" in f and "instance_masks_sha256" in f
        row = f["rgb_images"][1].copy()
        row[200:260] = 0  # a run of zero bytes: may decode without any warning
        f["rgb_images"][1] = row
        m = f["instance_masks"][1].copy()
        m[-20:-16] ^= 0xFF
        f["instance_masks"][1] = m
    ds = FlipHdf5Dataset(path)
    e0, e1 = ds.index()
    ds.load_image(e0)
    with pytest.raises(ItemError, match="sha256"):
        ds.load_image(e1)
    assert isinstance(ds.load_masks(e1, ["1"])["1"], ItemError)


def test_r2_item6_32bit_tiff_is_stretched_over_its_range(tmp_path):
    arr = np.full((20, 30), 1000, np.uint32)
    arr[5:15, 5:25] = 3_000_000
    Image.fromarray(arr.astype(np.int32), mode="I").save(tmp_path / "a.tif")
    img = read_image_file(tmp_path / "a.tif")
    assert img[0, 0, 0] == 0 and img[10, 10, 0] == 255  # scaled by 2^32 − 1 both would be 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_r2_item7_mask_file_with_0_1_values_is_read_as_the_object(tmp_path, dtype):
    h, w = 20, 30
    m = box_mask(h, w, 4, 12, 5, 20)
    images = [({"id": 1, "file_name": "a.png", "width": w, "height": h}, np.zeros((h, w, 3), np.uint8))]
    root = write_coco(tmp_path / "ds", images, [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "mask_file": "m.png"}])
    Image.fromarray(m.astype(dtype)).save(root / "m.png")
    ds = open_dataset(str(root))
    (e,) = ds.index()
    np.testing.assert_array_equal(ds.load_masks(e, ["1"])["1"], m)


@pytest.mark.parametrize("respell", ["slash", "name"])
def test_r2_item8_resume_guard_sees_through_another_spelling(tmp_path, respell):
    root = good_dataset(tmp_path / "ds")
    spec = f"{root / 'annotations.json'}::{root / 'images'}"
    assert cli(tmp_path, "--data", spec, "--run", "x", "--no-report") == 0
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["segmentation"] = rle(box_mask(20, 30, 0, 20, 0, 30))  # the mask is edited
    (root / "annotations.json").write_text(json.dumps(data))
    again = f"{root / 'annotations.json'}::{root / 'images'}/" if respell == "slash" else f"ds={spec}"
    assert cli(tmp_path, "--data", again, "--run", "x", "--no-report") == 2


def test_r2_item9_a_run_with_a_weights_file_is_labelled_by_the_file(tmp_path):
    import shutil

    from benchmark.models import create

    mine = tmp_path / "mine.pt"
    shutil.copy(ROOT / "flip" / "checkpoints" / "flip-tiny-objascale.pt", mine)
    m = create("flip-tiny.authors", weights=str(mine), device="cpu")
    assert m.name == "flip-tiny.project" and str(m.weights_id).startswith("project:mine.pt")


def test_r2_item9_float_weights_stored_as_integers_are_refused():
    import torch

    from flip.variants import create_model
    from flip.weights import WeightImportError, load_state_dict_checked

    model = create_model("flip-tiny")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    k = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 2)
    sd[k] = (sd[k] * 1000).to(torch.int64)
    with pytest.raises(WeightImportError, match="stored as integers"):
        load_state_dict_checked(model, sd, "int.onnx")


def test_r2_item12_json_size_is_checked_against_the_file_before_decoding(tmp_path):
    import tracemalloc

    h, w = 20, 30
    images = [({"id": 1, "file_name": "a.png", "width": 16000, "height": 16000}, np.zeros((h, w, 3), np.uint8))]
    root = write_coco(tmp_path / "ds", images, [ann(1, 1, [[1, 1, 15000, 1, 15000, 15000, 1, 15000]])])
    ds = open_dataset(str(root))
    (e,) = ds.index()
    tracemalloc.start()
    got = ds.load_masks(e, ["1"])["1"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(got, ItemError) and "16000×16000" in str(got) and "30×20" in str(got)
    assert peak < 20 << 20  # no 256 MB mask


def test_r2_item12_masks_of_one_image_are_decoded_in_bounded_batches(tmp_path, monkeypatch):
    import benchmark.runner as runner_mod

    h, w = 20, 30
    anns = [ann(i + 1, 1, rle(box_mask(h, w, i % 10, i % 10 + 5, i % 20, i % 20 + 6))) for i in range(10)]
    root = write_coco(tmp_path / "ds", [({"id": 1, "file_name": "a.png", "width": w, "height": h},
                                          np.zeros((h, w, 3), np.uint8))], anns)
    monkeypatch.setattr(runner_mod, "MASK_BUDGET_PIXELS", 3 * h * w)  # at most three masks at once

    class Counting(ThresholdSegmenter):
        name = "counting"

        def __init__(self):
            super().__init__()
            self.sets, self.batches = 0, []

        def set_image(self, image):
            self.sets += 1
            super().set_image(image)

        def predict(self, prompts):
            self.batches.append(len(prompts))
            return super().predict(prompts)

    m = Counting()
    loads = []
    ds = open_dataset(str(root))
    orig = type(ds).load_masks
    monkeypatch.setattr(type(ds), "load_masks", lambda self, e, ids: loads.append(len(ids)) or orig(self, e, ids))
    c = Runner(RunConfig(models=[m], datasets=[str(root)], run_dir=str(tmp_path / "run"), warmup=0, progress=False)).run()
    rows = read_rows(tmp_path / "run")
    assert c.ok == 10 and m.sets == 1 and max(m.batches) <= 3 and max(loads) <= 3
    assert {r["objects_in_image"] for r in rows} == {10} and len({r["time_amortised"] for r in rows}) == 1


def test_r2_item12_yaml_aliases_and_zip_bombs_are_refused_before_they_expand(tmp_path):
    import zipfile

    import torch

    from segcore.config import ConfigFileError, load_config_file
    from segcore.safe_load import UnsafeFileError, safe_torch_load

    cfg = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    cfg.write_text("\n".join(lines) + "\nmodel: *a8\n")  # 10^9 strings once expanded
    with pytest.raises(ConfigFileError, match="alias"):
        load_config_file(cfg)
    assert cli(tmp_path, "--config", str(cfg)) == 2
    # a .pt whose stored tensor is deflated: 64 MiB from a few hundred KiB
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(16 << 20)}, plain)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain.unlink()
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(UnsafeFileError, match="inflate"):
        safe_torch_load(bomb)
    from flip.training.checkpoint import load_checkpoint
    with pytest.raises(ValueError, match="inflate"):
        load_checkpoint(bomb)


def _damage(run, how):
    part = sorted((run / "records").glob("part-*.csv"))[0]
    text = part.read_text()
    if how == "schema":
        from segcore.records import SCHEMA_VERSION
        part.write_text(text.replace(f"\n{SCHEMA_VERSION},", "\n9,"))
    elif how == "columns":
        part.write_text("model,iou\nx,0.5\n")
    elif how == "binary":
        part.write_bytes(b"\x00\xff\xfe" + os.urandom(300))
    elif how == "empty":
        part.write_bytes(b"")
    elif how == "iou":
        lines = text.splitlines()
        cols = lines[0].split(",")
        cells = lines[1].split(",")
        cells[cols.index("iou")] = "abc"
        part.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
    elif how == "runjson-list":
        (run / "run.json").write_text("[1, 2]")


@pytest.mark.parametrize("how", ["schema", "columns", "binary", "empty", "iou", "runjson-list"])
def test_r2_item13_damaged_run_files_are_one_line_errors(tmp_path, how, capsys):
    from benchmark.report import main as report_main

    root, run = _run_with_records(tmp_path)
    _damage(run, how)
    capsys.readouterr()
    assert cli(tmp_path, "--data", str(root), "--run", "run") == 2  # the resume reads them first
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    if how != "runjson-list":
        assert report_main([str(run), "--no-latest"]) == 2
        assert capsys.readouterr().err.startswith("error:")


def test_r2_item13_a_bom_in_a_records_file_is_read_past(tmp_path):
    _, run = _run_with_records(tmp_path)
    part = sorted((run / "records").glob("part-*.csv"))[0]
    part.write_bytes(b"\xef\xbb\xbf" + part.read_bytes())
    assert len(read_rows(run)) == 2


@pytest.mark.parametrize("text", ['limit = "abc"', 'seed = "x"', 'threads = "a"', "limit = 2.7", "boundary = 3"])
def test_r2_item13_config_values_of_the_wrong_type(tmp_path, text, capsys):
    root = good_dataset(tmp_path / "ds")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    assert cli(tmp_path, "--config", str(cfg), "--data", str(root)) == 2 and no_run_json(tmp_path)
    assert capsys.readouterr().err.startswith("error: config file")


@pytest.mark.parametrize("args", [["--seed", "-1", "--limit", "2"], ["--threads", "100000"], ["--min-area", "nan"],
                                  ["--max-area", "inf"]])
def test_r2_item13_14_bad_numbers_stop_before_any_work(tmp_path, args, capsys):
    root = good_dataset(tmp_path / "ds")
    assert cli(tmp_path, "--data", str(root), *args) == 2 and no_run_json(tmp_path)


def test_r2_item13_results_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    root = good_dataset(tmp_path / "ds")
    (tmp_path / "afile").write_text("x")
    rc = cli_main(["--model", "oracle-box", "--data", str(root), "--results", str(tmp_path / "afile" / "r"), "--no-progress"])
    assert rc == 2 and "is a file" in capsys.readouterr().err
    import benchmark.runner as runner_mod

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(runner_mod.os, "statvfs", lambda p: Full())
    assert cli(tmp_path, "--data", str(root)) == 2 and "free" in capsys.readouterr().err and no_run_json(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_r2_item13_read_only_results(tmp_path, capsys):
    root = good_dataset(tmp_path / "ds")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = cli_main(["--model", "oracle-box", "--data", str(root), "--results", str(ro), "--no-progress"])
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "cannot write" in capsys.readouterr().err


def test_r2_item13_trainer_resume_from_garbage_is_a_one_line_error(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(2048))
    root = good_dataset(tmp_path / "ds")
    p = subprocess.run([sys.executable, "-m", "flip.training", "--data", str(root), "--out", str(tmp_path / "t"),
                        "--resume", str(garbage), "--steps", "1", "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--resume" in p.stderr, p.stderr[-2000:]


def test_r2_item14_empty_shard_is_named(tmp_path, capsys):
    root = good_dataset(tmp_path / "ds", n=1)
    assert cli(tmp_path, "--data", str(root), "--shard", "1/2", "--run", "x") == 1
    assert "shard 1/2" in capsys.readouterr().err


def test_r2_item14_fifo_and_symlink_loop_are_named_as_such(tmp_path):
    fifo = tmp_path / "a.json"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="FIFO"):
        open_dataset(str(fifo))
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(DatasetError, match="loops"):
        open_dataset(str(loop))


def test_r2_item14_an_existing_file_without_a_dot_is_a_weights_file(tmp_path, monkeypatch, capsys):
    root = good_dataset(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myweights").write_bytes(os.urandom(512))
    assert cli(tmp_path, "--data", str(root), "--weights", "myweights", model="flip-tiny") == 2
    err = capsys.readouterr().err
    assert "myweights: cannot be read" in err and "tag" not in err, err  # read as the file it is


def test_r2_item14_stale_part_temp_files_are_removed_at_start(tmp_path):
    _, run = _run_with_records(tmp_path)
    stale = run / "records" / ".part-s0of1-1-1-000000.csv.0123abcd.tmp"
    stale.write_text("half a row")
    os.utime(stale, (1, 1))  # an hour-old temp: left by a kill -9
    assert cli(tmp_path, "--data", str(tmp_path / "ds"), "--run", "run", "--no-report") == 0
    assert not stale.exists()


def test_r2_item16_empty_selection_of_another_split_names_all(tmp_path, capsys):
    h, w = 20, 30
    root = write_coco(tmp_path / "objs", [({"id": 1, "file_name": "a.png", "width": w, "height": h,
                                            "objascale": {"split": "all"}}, np.zeros((h, w, 3), np.uint8))],
                      [ann(1, 1, rle(box_mask(h, w, 2, 8, 2, 9)))])
    assert cli(tmp_path, "--data", str(root)) == 2
    assert "#all" in capsys.readouterr().err
