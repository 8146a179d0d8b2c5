"""Closing demonstrations of issues 11 and 23: folders of bad inputs (one of each kind, plus two good objects) run
through `python -m benchmark`, `python -m benchmark.report`, `python -m flip.training` and `python -m objascale`.

Round one (issue 11): the counters add up to the number of annotations, every exit code is the documented one
(0 done, 1 nothing succeeded, 2 configuration error before run.json), nothing crashed (no traceback, no signal)
and no code ran from a weights file.
Round two (issue 23): damaged and odd inputs are failed and counted (never scored as ok), no folder is deleted,
no row is lost under concurrent merges or SIGTERM/SIGINT, every bad file or option stops with a one-line error
(exit 2) before any work, and each memory bomb ends with a clear error or a counted skip under `ulimit -v
4000000`, with its peak resident memory printed.

    .venv/bin/python scripts/demo_hostile_inputs.py [--out DIR] [--keep] [--round 1|2|all]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from segcore.datasets import escape_spec
from segcore.image import read_image_file

H, W = 40, 60


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": r["counts"].decode("ascii")}


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def noise(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def build(root: Path) -> dict:
    """Writes every bad input under root; returns the specs and files the runs use."""
    coco = root / "coco=set#1,a"  # '=', '#' and ',' in the dataset path
    imgs = coco / "imgs=#,b"  # ... and in the image folder
    imgs.mkdir(parents=True)
    images, anns = [], []

    def add_image(iid, fname, pixels, sized=True, **extra):
        img = {"id": iid, **({"file_name": fname} if fname else {}), **extra}
        if sized:
            h, w = (pixels.shape[:2] if pixels is not None else (H, W))
            img.update(width=w, height=h)
        images.append(img)
        if pixels is not None:
            if pixels.dtype == np.uint16:
                Image.fromarray(pixels).save(imgs / fname)
            else:
                Image.fromarray(pixels).save(imgs / fname)

    def add_ann(aid, iid, seg, label, **kw):
        anns.append({"id": aid, "image_id": iid, "category_id": 1, "iscrowd": 0, "segmentation": seg, "demo": label, **kw})

    add_image(1, "good_a.png", noise(1))
    add_ann(1, 1, rle(box(H, W, 5, 20, 8, 30)), "good object A")
    add_image(2, "good_b.png", noise(2))
    add_ann(2, 2, rle(box(H, W, 10, 30, 20, 50)), "good object B")
    depth = np.full((H, W), 12000, np.uint16)
    depth[8:25, 10:40] = 50000
    add_image(3, "depth16.png", depth)
    add_ann(3, 3, rle(box(H, W, 8, 25, 10, 40)), "16-bit PNG image")
    add_ann(4, 1, rle(box(H, W, 25, 35, 40, 55)), "json area field = whole image", area=float(H * W))
    add_ann(5, 1, rle(box(H, W, 0, 40, 0, 60)), "whole-image object (filtered by --max-area 0.5)")
    add_ann(6, 2, rle(box(H, W, 1, 6, 1, 6)), "crowd annotation", iscrowd=1)
    add_image(7, "not_there.png", None)
    add_ann(7, 7, rle(box(H, W, 5, 20, 8, 30)), "image file missing")
    add_image(8, "one_row.png", noise(8, 1, W))
    add_ann(8, 8, rle(box(1, W, 0, 1, 5, 25)), "1×N image")
    add_ann(9, 1, [[5, 5, float("nan"), 5, 20, 20, 5, 20]], "NaN polygon coordinate")
    add_ann(10, 1, [[5, 5, 1e8, 5, 1e8, 20, 5, 20]], "1e8 polygon coordinate")
    add_image(11, "no_size.png", noise(11), sized=False)
    add_ann(11, 11, [[4, 4, 30, 4, 30, 20, 4, 20]], "image without width/height")
    add_image(12, None, None, coco_url="http://images.cocodataset.org/val2017/000000000012.jpg")
    add_ann(12, 12, rle(box(H, W, 5, 20, 8, 30)), "LVIS image (coco_url only), file missing")
    add_ann(13, 999, rle(box(H, W, 5, 20, 8, 30)), "annotation whose image is not in the file")
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    (coco / "annotations.json").write_text(json.dumps(data))

    # HDF5 in the authors' layout, with masks as 0/1 PNGs and as raw (N, 1, H, W) arrays
    import h5py

    h5_masks = [box(H, W, 6, 22, 9, 31), box(H, W, 12, 33, 15, 47)]
    h5_imgs = [noise(21), noise(22)]
    with h5py.File(root / "masks01.hdf5", "w") as f:
        vb = h5py.vlen_dtype(np.dtype("uint8"))
        f["image_instance_indices"] = np.array([[0, 1], [1, 1]], np.int64)
        ri, rm = f.create_dataset("rgb_images", (2,), dtype=vb), f.create_dataset("instance_masks", (2,), dtype=vb)
        for i, (im, m) in enumerate(zip(h5_imgs, h5_masks)):
            for ds, arr in ((ri, im), (rm, m.astype(np.uint8))):  # the mask PNG holds 0 and 1, not 0 and 255
                b = io.BytesIO()
                Image.fromarray(arr).save(b, format="PNG")
                ds[i] = np.frombuffer(b.getvalue(), np.uint8)
    with h5py.File(root / "raw.hdf5", "w") as f:
        f["image_instance_indices"] = np.array([[0, 1], [1, 1]], np.int64)
        f["rgb_images"] = np.stack(h5_imgs)
        f["instance_masks"] = np.stack(h5_masks)[:, None].astype(np.uint8)

    # an ObjaScale-style folder (annotations.json + images/, images tagged with their split) for the split typo
    objs = root / "objascale-like"
    (objs / "images").mkdir(parents=True)
    Image.fromarray(noise(31)).save(objs / "images" / "0.png")
    (objs / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "0.png", "width": W, "height": H, "objascale": {"split": "eval"}}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle(box(H, W, 5, 20, 8, 30))}],
        "categories": [{"id": 1, "name": "object"}]}))

    # json files that stop a run before it starts
    dup = json.loads(json.dumps(data))
    dup["annotations"][1]["id"] = 1
    (root / "duplicated_ids.json").write_text(json.dumps(dup))
    (root / "unreadable.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not json")

    # weights: garbage, empty, and one whose unpickling would run code (it must never run)
    marker = root / "PWNED"
    (root / "garbage.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "empty.pth").write_bytes(b"")
    (root / "garbage.onnx").write_bytes(b"\x08\x07" + np.random.default_rng(1).bytes(512))
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Evil()}, root / "evil.ckpt")
    main_spec = f"hostile={escape_spec(coco / 'annotations.json')}::{escape_spec(imgs)}"
    return dict(coco=coco, imgs=imgs, main_spec=main_spec, marker=marker, n_coco=len(anns), objascale=objs,
                h5=[f"masks01={escape_spec(root / 'masks01.hdf5')}", f"raw={escape_spec(root / 'raw.hdf5')}"])


def bench(root: Path, *args, model="oracle-box") -> tuple[int, str, str]:
    cmd = [sys.executable, "-m", "benchmark", "--model", model, "--results", str(root / "results"), "--no-progress",
           "--no-latest", "--warmup", "0", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return p.returncode, p.stdout, p.stderr


def short(text: str, root: Path, n: int = 200) -> str:
    line = next((l for l in text.strip().splitlines() if l.startswith("error:")), text.strip().splitlines()[-1] if text.strip() else "")
    line = line.replace(str(root) + "/", "")
    return line if len(line) <= n else line[: n - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="folder to build in (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--round", choices=["1", "2", "all"], default="all", help="which round's cases to run (default all)")
    a = ap.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix="hostile-")).resolve()
    if a.out and root.exists() and any(root.iterdir()):
        print(f"{root} is not empty", file=sys.stderr)
        return 2
    root.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        if a.round == "2":
            ok = round_two(root / "round2")
            return 0 if ok else 1
        b = build(root)
        print(f"bad-input folder: {root}")
        dec = read_image_file(b["imgs"] / "depth16.png")
        print(f"16-bit PNG decoded: background 12000 -> {dec[0, 0, 0]}, object 50000 -> {dec[10, 12, 0]} "
              f"(scaled by 255/65535, not clipped to 255)\n")

        # ---- the main run: three datasets, one invocation
        data = ",".join([b["main_spec"], *b["h5"]])
        print("main run: python -m benchmark --model oracle-box --max-area 0.5 --data " + data.replace(str(root) + "/", ""))
        rc, out, err = bench(root, "--data", data, "--max-area", "0.5", "--run", "main")
        run = root / "results" / "main"
        summary = json.loads((run / "summary-0of1.json").read_text())
        print(f"  exit code {rc} (expected 0); " + out.strip().splitlines()[0].replace(str(root) + "/", ""))
        from segcore.records import read_rows

        rows = read_rows(run)
        anns = {str(x["id"]): x["demo"] for x in json.loads((b["coco"] / "annotations.json").read_text())["annotations"]}
        n_files = {"hostile": b["n_coco"], "masks01": 2, "raw": 2}
        print("\n  per dataset (objects in file = sum of outcomes):")
        for where, d in summary["by_model_dataset"].items():
            parts = {k: v for k, v in d.items() if k != "objects_in_files"}
            ds_name = where.split(" | ")[1]
            adds = sum(parts.values()) == d["objects_in_files"] == n_files[ds_name]
            ok &= adds
            print(f"    {where:22s} {d['objects_in_files']:3d} objects = " + " + ".join(f"{v} {k}" for k, v in parts.items())
                  + ("   ✓" if adds else "   ✗ DOES NOT ADD UP"))
        print(f"  total {summary['objects_in_files']} = {sum(summary[k] for k in ('ok', 'failed', 'empty_masks_skipped', 'area_filtered', 'crowd_skipped', 'image_not_in_file', 'other_split', 'not_sampled', 'other_shard', 'already_done'))}"
              f"; counters_add_up = {summary['counters_add_up']}")
        ok &= rc == 0 and summary["counters_add_up"]
        print("\n  every object of the COCO file:")
        by_id = {r["object_id"]: r for r in rows if r["dataset"] == "hostile"}
        for aid, label in anns.items():
            r = by_id.get(aid)
            if r is None:
                outcome = {"5": "filtered by area", "6": "crowd skipped", "13": "image not in file"}.get(aid, "?")
                print(f"    {aid:>3} {label:48s} counted: {outcome}")
            else:
                iou = f"IoU {r['iou']:.3f}" if r["status"] == "ok" else r["reason"].replace(str(root) + "/", "")
                print(f"    {aid:>3} {label:48s} {r['status']:6s} {iou}")
        for r in rows:
            if r["dataset"] != "hostile":
                what = {"masks01": "HDF5 mask stored as a 0/1 PNG", "raw": "HDF5 raw (N,1,H,W) mask + raw image"}[r["dataset"]]
                print(f"    {r['dataset'] + '/' + r['object_id']:>9} {what:42s} {r['status']:6s} IoU {r['iou']:.3f}")
        print(f"  report: {'report.html written, counters table ' + ('present' if 'Crowd skipped' in (run / 'report.html').read_text() else 'MISSING') if (run / 'report.html').is_file() else 'missing'}")

        # ---- runs that must stop before anything is written, and the all-failed run
        print("\nruns that must not start (exit 2, no run.json) or that must report failure (exit 1):")
        cases = [
            ("duplicated annotation ids", ["--data", escape_spec(root / "duplicated_ids.json") + "::" + escape_spec(b["imgs"])], "oracle-box", 2),
            ("unreadable json", ["--data", escape_spec(root / "unreadable.json") + "::" + escape_spec(b["imgs"])], "oracle-box", 2),
            ("garbage weights .ckpt", ["--data", b["main_spec"], "--weights", str(root / "garbage.ckpt")], "flip-tiny", 2),
            ("empty weights .pth", ["--data", b["main_spec"], "--weights", str(root / "empty.pth")], "flip-tiny", 2),
            ("garbage weights .onnx", ["--data", b["main_spec"], "--weights", str(root / "garbage.onnx")], "flip-tiny", 2),
            ("pickle that runs code .ckpt", ["--data", b["main_spec"], "--weights", str(root / "evil.ckpt")], "flip-tiny", 2),
            ("empty selection --limit 0", ["--data", b["main_spec"], "--limit", "0"], "oracle-box", 2),
            ("empty selection --min-area 0.9", ["--data", b["h5"][0], "--min-area", "0.9"], "oracle-box", 2),
            ("split typo DIR#evall", ["--data", escape_spec(b["objascale"]) + "#evall"], "oracle-box", 2),
            ("wrong image folder (all fail)", ["--data", b["main_spec"].split("::")[0] + "::" + escape_spec(root), "--run", "wrongdir"], "oracle-box", 1),
        ]
        for label, args, model, want in cases:
            before = set((root / "results").rglob("run.json"))
            rc, out, err = bench(root, *args, model=model)
            wrote = set((root / "results").rglob("run.json")) - before
            crashed = "Traceback" in err or rc < 0
            good = rc == want and not crashed and (want != 2 or not wrote)
            ok &= good
            print(f"  {'✓' if good else '✗'} {label:36s} exit {rc} (expected {want}){', run.json written' if wrote and want == 2 else ''}"
                  f"{', CRASHED' if crashed else ''}\n      {short(err or out, root)}")

        # ---- an edit that keeps the file's length: a resume must not reuse the old records
        img = b["imgs"] / "good_a.png"
        st = img.stat()
        raw = bytearray(img.read_bytes())
        raw[-30] ^= 0xFF
        img.write_bytes(bytes(raw))
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
        rc, out, err = bench(root, "--data", data, "--max-area", "0.5", "--run", "main", "--no-report")
        good = rc == 2 and "different version of dataset" in err
        ok &= good
        print(f"  {'✓' if good else '✗'} {'same-length edit, resume --run main':36s} exit {rc} (expected 2)\n      {short(err, root)}")
        before = {p.name for p in (root / "results").iterdir()}
        rc1, _, _ = bench(root, "--data", data, "--max-area", "0.5", "--no-report")
        rc2, _, _ = bench(root, "--data", data, "--max-area", "0.5", "--no-report")
        new = {p.name for p in (root / "results").iterdir()} - before
        good = rc1 == 0 and rc2 == 0 and len(new) == 1
        ok &= good
        print(f"  {'✓' if good else '✗'} {'same-length edit, default run name':36s} exit {rc1} then {rc2} (expected 0): "
              f"a new run folder for the new content ({len(new)} created), the rerun resumes it")

        pwned = b["marker"].exists()
        ok &= not pwned
        print(f"\nno code ran from a weights file: marker {b['marker'].name} {'EXISTS ✗' if pwned else 'absent ✓'}")
        print(f"nothing crashed, every exit code as documented, counters add up: {'yes' if ok else 'NO'}")
        if a.round == "all":
            ok &= round_two(root / "round2")
    finally:
        if not a.out and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


# ================================================================= round two (issue 23)

ROOT = Path(__file__).resolve().parents[1]
ULIMIT_KB = 4_000_000
# runs a module's __main__ and reports this process's peak resident memory on stderr
PEAK_WRAPPER = """
import resource, runpy, sys
mod = sys.argv[1]; sys.argv = [mod] + sys.argv[2:]
code = 0
try:
    runpy.run_module(mod, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    sys.stderr.write("\\nPEAK_RSS_KB=%d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""
SLOW_MODEL = """
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
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def py(args, timeout=1800, limit_kb=None, cwd=None):
    """(exit code, stdout, stderr, peak RSS in MB or None) of `python ARGS`, optionally under ulimit -v."""
    if limit_kb:  # args: -m MODULE ...; the wrapper takes MODULE ...
        mod_args = args[1:] if args[0] == "-m" else args
        cmd = ["bash", "-c", f'ulimit -v {limit_kb}; exec "$0" "$@"', sys.executable, "-c", PEAK_WRAPPER, *mod_args]
    else:
        cmd = [sys.executable, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd or ROOT)
    peak = None
    for line in p.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB="):
            peak = int(line.split("=")[1]) / 1024
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith("PEAK_RSS_KB=")).strip()
    return p.returncode, p.stdout, err, peak


def one_line(err: str, root: Path) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    line = next((l for l in lines if l.startswith("error:")), lines[-1] if lines else "")
    return line.replace(str(root) + "/", "")[:220]


def jpeg(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    img = np.asarray(Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h)))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def build_round_two(root: Path) -> dict:
    """One bad input of each kind of issue 23 plus two good objects."""
    d = root / "data"
    imgs = d / "images"
    imgs.mkdir(parents=True)
    H2, W2 = 48, 64
    images, anns = [], []

    def add(iid, fname, data, label, seg=None, w=W2, h=H2, **extra):
        images.append({"id": iid, "file_name": fname, "width": w, "height": h})
        if data is not None:
            (imgs / fname).write_bytes(data) if isinstance(data, bytes) else Image.fromarray(data).save(imgs / fname)
        a = {"id": iid, "image_id": iid, "category_id": 1, "iscrowd": 0, "demo": label, **extra}
        if seg is not None:
            a["segmentation"] = seg
        anns.append(a)

    good = box(H2, W2, 8, 30, 10, 40)
    add(1, "good_a.png", noise(101, H2, W2), "good object A", rle(good))
    add(2, "good_b.jpg", jpeg(102), "good object B (JPEG)", rle(box(H2, W2, 12, 40, 20, 60)))
    zeroed = bytearray(jpeg(103, 96, 128))
    mid = len(zeroed) // 2
    zeroed[mid:mid + 1024] = bytes(1024)
    add(3, "zeroed.jpg", bytes(zeroed), "JPEG with 1 KB zeroed (item 5)", rle(box(96, 128, 10, 40, 10, 60)), w=128, h=96)
    cut = jpeg(104, 96, 128)
    add(4, "cut.jpg", cut[: len(cut) * 2 // 3] + b"\xff\xd9", "JPEG cut short (item 5)", rle(box(96, 128, 10, 40, 10, 60)), w=128, h=96)
    t32 = np.full((H2, W2), 1000, np.int32)
    t32[8:30, 10:40] = 3_000_000
    add(5, "deep.tif", t32, "32-bit integer TIFF (item 6)", rle(good))
    Image.fromarray(good.astype(np.uint8)).save(d / "mask01.png")  # 0/1 values
    add(6, "good_a.png", None, "mask_file PNG with 0/1 values (item 7)", None, mask_file="mask01.png")
    images[-1]["file_name"] = "good_a.png"
    add(7, "good_a.png", None, "json says 16000x16000 for a 64x48 image (item 12)",
        [[1, 1, 15000, 1, 15000, 15000, 1, 15000]], w=16000, h=16000)
    (d / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                    "categories": [{"id": 1, "name": "object"}]}))
    # HDF5 written by the project's writer (sha256 per row), one image row damaged afterwards
    import h5py

    from segcore.datasets import write_flip_hdf5

    h5 = root / "digest.hdf5"
    write_flip_hdf5(h5, [noise(111, H2, W2), noise(112, H2, W2)], [[good], [good]])
    with h5py.File(h5, "a") as f:
        row = f["rgb_images"][1].copy()
        row[300:400] = 0
        f["rgb_images"][1] = row
    # 3000 objects on one 1000x1000 image (item 12)
    many = root / "many"
    (many / "images").mkdir(parents=True)
    Image.fromarray(noise(121, 1000, 1000)).save(many / "images" / "big.png")
    rng = np.random.default_rng(5)
    manyanns = []
    for k in range(3000):
        y, x = rng.integers(0, 960), rng.integers(0, 960)
        manyanns.append({"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "segmentation": [[float(x), float(y), x + 30.0, float(y), x + 30.0, y + 30.0, float(x), y + 30.0]]})
    (many / "annotations.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "big.png", "width": 1000, "height": 1000}],
                                                       "annotations": manyanns, "categories": [{"id": 1, "name": "o"}]}))
    # config files: wrong types, and a YAML whose nested aliases expand to 10^9 strings
    cfgs = {}
    for name, text in (("limit_abc", 'limit = "abc"'), ("seed_x", 'seed = "x"'), ("threads_a", 'threads = "a"'),
                       ("limit_2.7", "limit = 2.7")):
        cfgs[name] = root / f"{name}.toml"
        cfgs[name].write_text(text + "\n")
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (root / "bomb.yaml").write_text("\n".join(lines) + "\nmodel: *a8\n")
    # weights: a zip bomb (2 GiB of zeros deflated), a garbage file without a dot in its name
    import zipfile

    import torch

    plain = root / "plain.pt"
    torch.save({"w": torch.empty(512 << 20)}, plain)  # 2 GiB on disk, untouched pages in memory
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(root / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with src.open(info) as fi, dst.open(info.filename, "w", force_zip64=True) as fo:
                shutil.copyfileobj(fi, fo, 16 << 20)
    plain.unlink()
    (root / "myweights").write_bytes(np.random.default_rng(2).bytes(4096))
    (root / "garbage.ckpt").write_bytes(np.random.default_rng(3).bytes(4096))
    os.mkfifo(root / "fifo.json")
    (root / "loop").symlink_to(root / "loop")
    (root / "afile").write_text("not a folder")
    return dict(data=d, h5=h5, many=many, cfgs=cfgs, n_main=len(anns))


def round_two(root: Path) -> bool:
    root.mkdir(parents=True, exist_ok=True)
    ok = True
    print("\n======== round two (issue 23) ========")
    b = build_round_two(root)
    res = root / "results"
    spec = escape_spec(b["data"])
    bench2 = lambda *args, model="oracle-box": py(["-m", "benchmark", "--model", model, "--results", str(res), "--no-progress",
                                                  "--no-latest", "--warmup", "0", *args])
    print(f"bad-input folder: {root}; bomb.pt {(root / 'bomb.pt').stat().st_size / 2**20:.1f} MiB on disk, "
          f"2048 MiB once inflated; bomb.yaml {(root / 'bomb.yaml').stat().st_size} bytes")

    # ---- the main run: one bad input of each kind that is data, plus two good objects
    data = f"{spec},h5={escape_spec(b['h5'])}"
    rc, out, err, _ = bench2("--data", data, "--run", "main")
    run = res / "main"
    summary = json.loads((run / "summary-0of1.json").read_text())
    from segcore.records import read_rows

    rows = {(r["dataset"], r["object_id"]): r for r in read_rows(run)}
    anns = {str(a["id"]): a["demo"] for a in json.loads((b["data"] / "annotations.json").read_text())["annotations"]}
    want = {"1": "ok", "2": "ok", "3": "failed", "4": "failed", "5": "ok", "6": "ok", "7": "failed"}
    print(f"\nmain run (exit {rc}, expected 0): {summary['objects_in_files']} objects in the files = "
          + " + ".join(f"{summary[k]} {k.replace('_', ' ')}" for k in ('ok', 'failed', 'empty_masks_skipped') if summary[k])
          + f"; counters_add_up = {summary['counters_add_up']}")
    good = rc == 0 and summary["counters_add_up"] and summary["objects_in_files"] == b["n_main"] + 2
    for aid, label in anns.items():
        r = rows.get(("data", aid))
        st = r["status"] if r else "?"
        good &= st == want[aid]
        why = f"IoU {r['iou']:.3f}" if r and st == "ok" else (r["reason"][:110] if r else "")
        print(f"  {'✓' if st == want[aid] else '✗'} {aid} {label:52s} {st:6s} {why}")
    for oid, st_want, label in (("0", "ok", "HDF5 row intact"), ("1", "failed", "HDF5 row with 100 zeroed bytes (sha256)")):
        r = rows.get(("h5", oid))
        good &= bool(r) and r["status"] == st_want
        print(f"  {'✓' if r and r['status'] == st_want else '✗'} h5/{oid} {label:49s} {r['status'] if r else '?':6s} "
              f"{(r['reason'][:110] if r and r['status'] != 'ok' else '')}")
    ok &= good

    # ---- no folder deleted: a real `latest` folder, --run latest / . / .., report of a run named latest
    latest = res / "latest"
    latest.mkdir()
    (latest / "precious.txt").write_text("not made by the suite")
    rc1, _, err1, _ = py(["-m", "benchmark.report", str(run)])
    print("\nno folder deleted:")
    kept = (latest / "precious.txt").is_file() and (run / "run.json").is_file()
    print(f"  {'✓' if rc1 == 0 and kept else '✗'} report with a real results/latest folder: exit {rc1}, latest kept "
          f"({one_line(err1, root)})")
    ok &= rc1 == 0 and kept
    for name in ("latest", ".", ".."):
        rc2, _, err2, _ = bench2("--data", spec, "--run", name)
        good = rc2 == 2 and (latest / "precious.txt").is_file() and (run / "run.json").is_file() and res.is_dir()
        ok &= good
        print(f"  {'✓' if good else '✗'} --run {name!r:9s} exit {rc2} (expected 2), nothing deleted: {one_line(err2, root)}")

    # ---- concurrent merges: 6 pairs, 27 rows in 9 part files each time
    from segcore.records import make_row, write_csv

    lost = []
    for pair in range(6):
        m = root / f"merge{pair}"
        (m / "records").mkdir(parents=True)
        for k in range(9):
            write_csv(m / "records" / f"part-s{k}-{k:06d}.csv",
                      [make_row(model="m", weights_id="w", num_parameters=1, dataset="d", image_id=str(k), object_id=f"{k}-{j}",
                                status="ok", iou=0.5, area_px=10, area_ratio=0.1, width=10, height=10) for j in range(3)])
        procs = [subprocess.Popen([sys.executable, "-m", "benchmark.report", str(m), "--merge", "--no-latest"], cwd=ROOT,
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        rcs = [p.wait(timeout=900) for p in procs]
        n = len(read_rows(m))
        lost.append((rcs, n))
    good = all(rcs == [0, 0] and n == 27 for rcs, n in lost)
    ok &= good
    print(f"\n{'✓' if good else '✗'} concurrent merges: 6 pairs of `benchmark.report RUN --merge`: exit codes "
          f"{[r for r, _ in lost]}, rows kept {[n for _, n in lost]} of 27")

    # ---- SIGTERM / SIGINT during a run: buffered rows written, one line, rerun completes
    import signal
    import time

    sig_data = root / "sigdata"
    (sig_data / "images").mkdir(parents=True)
    sig_imgs, sig_anns = [], []
    for i in range(1, 61):
        Image.fromarray(noise(200 + i)).save(sig_data / "images" / f"{i}.png")
        sig_imgs.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
        sig_anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": rle(box(H, W, 2 + i % 9, 20 + i % 9, 3, 30))})
    (sig_data / "annotations.json").write_text(json.dumps({"images": sig_imgs, "annotations": sig_anns, "categories": [{"id": 1, "name": "o"}]}))
    print("\nsignals during a run (60 objects, 0.15 s each, records flushed every 200 rows):")
    for sig in ("SIGTERM", "SIGINT"):
        args = ["--model", "slow", "--data", str(sig_data), "--results", str(res), "--run", f"sig-{sig}", "--no-progress",
                "--warmup", "0", "--no-report"]
        p = subprocess.Popen([sys.executable, "-c", SLOW_MODEL, *args], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        end = time.time() + 120
        while not (res / f"sig-{sig}" / "run.json").is_file() and time.time() < end:
            time.sleep(0.1)
        time.sleep(3.0)
        p.send_signal(getattr(signal, sig))
        _, err3 = p.communicate(timeout=300)
        n1 = len(read_rows(res / f"sig-{sig}"))
        rc4 = subprocess.run([sys.executable, "-c", SLOW_MODEL, *args], cwd=ROOT, env=_env(), capture_output=True).returncode
        n2 = len(read_rows(res / f"sig-{sig}"))
        good = p.returncode == 130 and n1 > 0 and "Traceback" not in err3 and rc4 == 0 and n2 == 60
        ok &= good
        print(f"  {'✓' if good else '✗'} {sig} after 3 s: exit {p.returncode} (expected 130), {n1} rows on disk, "
              f"\"{err3.strip().splitlines()[-1] if err3.strip() else ''}\"; rerun exit {rc4}, {n2} of 60 rows")

    # ---- one-line errors with exit 2 before any work
    print("\nbad files and options: exit 2, one line, before any work (no run.json):")
    def damaged(how):
        import shutil as sh

        name = f"dmg-{how}"
        sh.copytree(run, res / name)
        target = res / name
        part = target / "records.csv"
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
            cols, cells = lines[0].split(","), lines[1].split(",")
            cells[cols.index("iou")] = "abc"
            part.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
        elif how == "runjson-list":
            (target / "run.json").write_text("[1, 2]")
        return name

    cases = [(f"records: {how}", ["--data", data, "--run", damaged(how)], "oracle-box")
             for how in ("schema", "columns", "binary", "empty", "iou", "runjson-list")]
    cases += [(f"config {n}", ["--data", spec, "--config", str(f)], "oracle-box") for n, f in b["cfgs"].items()]
    cases += [("--seed -1 --limit 2", ["--data", spec, "--seed", "-1", "--limit", "2"], "oracle-box"),
              ("--threads 100000", ["--data", spec, "--threads", "100000"], "oracle-box"),
              ("--min-area nan", ["--data", spec, "--min-area", "nan"], "oracle-box"),
              ("results under a file", ["--data", spec, "--results", str(root / "afile" / "r")], "oracle-box"),
              ("FIFO as data", ["--data", escape_spec(root / "fifo.json")], "oracle-box"),
              ("symlink loop as data", ["--data", escape_spec(root / "loop")], "oracle-box"),
              ("--weights myweights (file, no dot)", ["--data", spec, "--weights", "myweights"], "flip-tiny")]
    for label, args, model in cases:
        before = set(res.rglob("run.json"))
        rc5, out5, err5, _ = py(["-m", "benchmark", "--model", model, "--results", str(res), "--no-progress", "--no-latest",
                                 "--warmup", "0", *args], cwd=root)
        wrote = set(res.rglob("run.json")) - before
        lines = [l for l in err5.splitlines() if l.strip()]
        good = rc5 == 2 and not wrote and "Traceback" not in err5 and len(lines) == 1
        ok &= good
        print(f"  {'✓' if good else '✗'} {label:36s} exit {rc5}: {one_line(err5, root)}")
    rc6, _, err6, _ = py(["-m", "flip.training", "--data", spec, "--out", str(root / "train"), "--resume",
                          str(root / "garbage.ckpt"), "--steps", "1", "--no-progress"])
    good = rc6 == 2 and "Traceback" not in err6
    ok &= good
    print(f"  {'✓' if good else '✗'} {'flip.training --resume garbage.ckpt':36s} exit {rc6}: {one_line(err6, root)}")
    rc7, out7, err7, _ = py(["-m", "objascale", "--out", str(root / "huge"), "--status", "--num-images", "100000000"], timeout=300)
    good = rc7 == 0 and "99999999" not in out7 and "'pending': 100000000" in out7
    ok &= good
    print(f"  {'✓' if good else '✗'} {'objascale --status, 10^8 images':36s} exit {rc7}: {out7.strip()}")
    rc8, _, err8, _ = py(["-m", "objascale", "--out", ""], cwd=root)
    ok &= rc8 == 2
    label8 = "objascale --out ''"
    print(f"  {'✓' if rc8 == 2 else '✗'} {label8:36s} exit {rc8}: {one_line(err8, root)}")

    # ---- memory bombs under ulimit -v 4000000: a clear error or a counted skip, with the peak memory
    print(f"\nmemory bombs under `ulimit -v {ULIMIT_KB}` (peak resident memory of the process):")
    bombs = [("zip-bomb .pt (2 GiB inflated) as --weights", ["-m", "benchmark", "--model", "flip-tiny", "--weights",
                                                             str(root / "bomb.pt"), "--data", spec], 2),
             ("YAML config with nested aliases (10^9 strings)", ["-m", "benchmark", "--config", str(root / "bomb.yaml"),
                                                                 "--data", spec], 2),
             ("json declaring 16000x16000 for a 64x48 image", ["-m", "benchmark", "--model", "oracle-box", "--data",
                                                              spec, "--run", "bomb-json"], 0),
             ("3000 objects on one 1000x1000 image", ["-m", "benchmark", "--model", "oracle-box", "--data",
                                                      escape_spec(b["many"]), "--run", "bomb-many", "--no-boundary"], 0),
             ("trainer on images that cannot be read", ["-m", "flip.training", "--data", escape_spec(b["data"] / "annotations.json")
                                                        + "::" + escape_spec(root), "--out", str(root / "t2"), "--steps", "1000",
                                                        "--batch-images", "2", "--no-progress", "--threads", "1"], 1)]
    for label, args, want in bombs:
        if args[1] == "benchmark":
            args = args[:2] + ["--results", str(res), "--no-progress", "--no-latest", "--warmup", "0"] + args[2:]
        rc9, out9, err9, peak = py(args, limit_kb=ULIMIT_KB)
        good = rc9 == want and "Traceback" not in err9 and "MemoryError" not in err9
        extra = ""
        if ("bomb-json" in args or "bomb-many" in args) and rc9 in (0, 1):
            sm = json.loads((res / args[args.index("--run") + 1] / "summary-0of1.json").read_text())
            extra = f" [{sm['ok']} ok, {sm['failed']} failed, counters add up: {sm['counters_add_up']}]"
            good &= sm["counters_add_up"]
        ok &= good
        print(f"  {'✓' if good else '✗'} {label:48s} exit {rc9} (expected {want}), peak {peak or float('nan'):.0f} MB"
              f"{extra}: {one_line(err9 or out9, root)}")
    print(f"\nround two: {'every check passed' if ok else 'SOME CHECKS FAILED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
