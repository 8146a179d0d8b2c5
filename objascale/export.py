"""Dataset outputs built from the per-image records: manifest, COCO annotations.json, FLIP HDF5 (segcore.hdf5)."""
from __future__ import annotations

import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .io import Layout, atomic_path, atomic_write_json


def load_records(root: str | Path, num_images: int) -> tuple[list[dict], dict[int, dict]]:
    """Done records (sorted by index) and skip records, for indices [0, num_images)."""
    lay = Layout(root)
    done, skipped = [], {}
    for i in range(num_images):
        st = lay.status(i)
        if st == "done":
            try:
                done.append(json.loads(lay.record_path(i).read_text()))
            except (OSError, ValueError) as e:  # a damaged record: treat the image as pending
                print(f"objascale: record {lay.record_path(i)} unreadable ({e}); image {i} counts as pending")
        elif st == "skipped":
            try:
                skipped[i] = json.loads(lay.skip_path(i).read_text())
            except (OSError, ValueError):
                skipped[i] = {"reason": "skip record unreadable"}
    return done, skipped


def status_counts(root: str | Path, num_images: int) -> dict:
    """{done, skipped, pending} from one listing of records/ (no file opened, no stat per planned image), so
    `--status` answers at once whatever --num-images says."""
    import re

    lay = Layout(root)
    done, skipped = set(), set()
    if lay.records.is_dir():
        with os.scandir(lay.records) as it:
            for e in it:
                m = re.fullmatch(r"(\d+)(\.skip)?\.json", e.name)
                if m and int(m.group(1)) < num_images:
                    (skipped if m.group(2) else done).add(int(m.group(1)))
    skipped -= done  # a done record wins, as Layout.status says
    return {"done": len(done), "skipped": len(skipped), "pending": num_images - len(done) - len(skipped)}


UPRIGHT_MARGIN = 1.5  # a horizontal extent this much longer than the vertical one, where the category's others stand tall


def up_axis_warnings(done: list[dict]) -> list[str]:
    """Objects that probably lie on their side: in a category whose objects are mostly tallest along the vertical
    axis, one whose vertical extent is the shortest by UPRIGHT_MARGIN (a Y-up mesh read as Z-up, or the reverse;
    a mixed pack renders half its objects lying down). Plain Python over the records' extents."""
    by_cat: dict[str, dict[str, list]] = {}
    for r in done:
        ext = r.get("object_extent_file_units")
        if isinstance(ext, list) and len(ext) == 3 and all(isinstance(v, (int, float)) for v in ext):
            by_cat.setdefault(r.get("category", "?"), {})[str(r.get("object_id"))] = [ext, r.get("object_up_axis", "")]
    out = []
    for cat, objs in sorted(by_cat.items()):
        tall = [oid for oid, (e, _) in objs.items() if e[2] >= max(e[0], e[1])]
        if len(objs) < 3 or len(tall) * 2 <= len(objs):
            continue  # no clear upright majority: nothing to compare with
        for oid, (e, up) in sorted(objs.items()):
            if max(e[0], e[1]) > UPRIGHT_MARGIN * e[2] and oid not in tall:
                out.append(f"object {oid} ({cat}): extent x {e[0]:.3g}, y {e[1]:.3g}, z (up) {e[2]:.3g} while "
                           f"{len(tall)} of {len(objs)} {cat} objects stand tallest along z: its up axis is probably "
                           f"wrong (up axis used: {up or 'format default'}; set up_axis Y or Z in the object manifest)")
    return out


def write_manifest(root: str | Path, num_images: int) -> dict:
    done, skipped = load_records(root, num_images)
    done_ids = {r["index"] for r in done}
    items = {}
    for i in range(num_images):
        if i in done_ids:
            items[str(i)] = {"status": "done"}
        elif i in skipped:
            items[str(i)] = {"status": "skipped", "reason": skipped[i].get("reason", "")}
        else:
            items[str(i)] = {"status": "pending"}
    counts = {k: sum(1 for v in items.values() if v["status"] == k) for k in ("done", "skipped", "pending")}
    manifest = {"num_images": num_images, "counts": counts, "items": items,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(Path(root) / "manifest.json", manifest)
    return manifest


def build_coco(root: str | Path, num_images: int, categories: list[str], info: dict) -> dict:
    done, _ = load_records(root, num_images)
    cat_ids = {c: k + 1 for k, c in enumerate(categories)}
    for r in done:  # categories of records made under another category list still get an id
        cat_ids.setdefault(r["category"], len(cat_ids) + 1)
    supercats = {r["category"]: r.get("supercategory", "") for r in done}
    licences = sorted({r["object_license"] for r in done})
    lic_ids = {name: k + 1 for k, name in enumerate(licences)}
    coco = {
        "info": dict(info, date_created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        "licenses": [{"id": lic_ids[n], "name": n, "url": ""} for n in licences],
        "categories": [{"id": k, "name": c, "supercategory": supercats.get(c, "")} for c, k in cat_ids.items()],
        "images": [],
        "annotations": [],
    }
    for r in done:
        iid = r["index"] + 1
        coco["images"].append({
            "id": iid, "file_name": r["file_name"], "width": r["width"], "height": r["height"],
            "license": lic_ids[r["object_license"]], "mask_file": r["mask_file"],
            "objascale": {k: r[k] for k in ("index", "seed", "attempt", "split", "object_id", "object_source", "object_license",
                                            "object_attribution", "hdri", "area_ratio", "area_ratio_planned")},
        })
        coco["annotations"].append({
            "id": iid, "image_id": iid, "category_id": cat_ids[r["category"]], "iscrowd": 0,
            "segmentation": r["rle"], "area": r["area_px"], "bbox": r["bbox_xywh"], "bbox_xyxy": r["bbox_xyxy"],
            "rho": r["rho"], "area_ratio": r["area_ratio"],
        })
    atomic_write_json(Path(root) / "annotations.json", coco)
    with atomic_path(Path(root) / "metadata.jsonl") as tmp, tmp.open("w") as f:
        for r in done:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    return coco


def _jpeg_bytes(path: Path, quality: int = 95) -> bytes:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return path.read_bytes()
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_hdf5(root: str | Path, num_images: int, dataset_name: str, split: str, version: int = 1) -> Path:
    """FLIP HDF5 layout (segcore.hdf5): JPEG images, PNG masks, rho positions, boxes, index tables.

    Every dataset is chunked and resizable (maxshape None), so shards of a Slurm run or separate runs merge with the
    standard h5py append idiom (`d.resize(n + k, axis=0); d[n:] = src[:]`) or segcore.hdf5.merge_files."""
    import h5py

    from segcore.hdf5 import FlipHdf5Writer

    root = Path(root)
    done, _ = load_records(root, num_images)
    coco = json.loads((root / "annotations.json").read_text()) if (root / "annotations.json").is_file() else {"licenses": []}
    lic_ids = {lic["name"]: lic["id"] for lic in coco.get("licenses", [])}
    out = root / f"{dataset_name}-{split}-v{version}.hdf5"
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        w = FlipHdf5Writer(f, dataset_name=dataset_name, split=split,
                           metadata={"coco_licenses": json.dumps(coco.get("licenses", [])), "generator": "objascale"})
        for r in done:
            x0, y0, x1, y1 = r["bbox_xyxy"]
            w.add_image(_jpeg_bytes(root / r["file_name"]), [(root / r["mask_file"]).read_bytes()], [r["rho"]],
                        bboxes=[[x0, y0, x1 - 1, y1 - 1]],  # inclusive pixel indices of the extreme mask pixels
                        coco_image_id=r["index"] + 1, license_id=lic_ids.get(r["object_license"], 0),
                        file_name=r["file_name"], transform_note="objascale render")
    return out
