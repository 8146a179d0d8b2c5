"""Issue 11's closing demonstration: a folder of bad inputs (one of each kind, plus two good objects) run through
`python -m benchmark`. Shows that the counters add up to the number of annotations, that every exit code is the
documented one (0 done, 1 nothing succeeded, 2 configuration error before run.json), that nothing crashed (no
traceback, no signal) and that no code ran from a weights file.

    .venv/bin/python scripts/demo_hostile_inputs.py [--out DIR] [--keep]
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
    a = ap.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix="hostile-")).resolve()
    if a.out and root.exists() and any(root.iterdir()):
        print(f"{root} is not empty", file=sys.stderr)
        return 2
    root.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
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
    finally:
        if not a.out and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
