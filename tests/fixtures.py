"""A tiny synthetic COCO-format dataset (ellipses and boxes on noise) for tests and for measuring the harness
when no rendered dataset is around. Seeded; written atomically enough for tests (no partial json)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def random_shapes(rng: np.random.Generator, h: int, w: int, n: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    masks = []
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, max(2, h / 3)), rng.uniform(1, max(2, w / 3))
        if rng.random() < 0.5:
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        if not m.any():
            m[int(min(cy, h - 1)), int(min(cx, w - 1))] = True
        masks.append(m)
    return masks


def make_coco_dataset(root, n_images: int = 4, objects_per_image: int = 3, seed: int = 0,
                      sizes=((48, 64), (64, 64), (40, 72)), polygons: bool = True) -> Path:
    """root/annotations.json + root/images/*.png. Object masks as compressed RLE, plus one polygon object per
    image when `polygons` (a box polygon, so its rasterisation is exact up to pycocotools' edge rule)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    aid = 1
    for i in range(n_images):
        h, w = sizes[i % len(sizes)]
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        fname = f"{i:04d}.png"
        Image.fromarray(img).save(root / "images" / fname)
        images.append({"id": i + 1, "file_name": fname, "width": w, "height": h})
        for m in random_shapes(rng, h, w, objects_per_image):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": float(m.sum()),
                         "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                         "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}})
            aid += 1
        if polygons:
            x0, y0 = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
            x1, y1 = x0 + w / 4, y0 + h / 4
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "area": (x1 - x0) * (y1 - y0),
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
            aid += 1
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    tmp = root / ".annotations.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, root / "annotations.json")
    return root


def assert_segmenter_behaves(seg, image, prompts) -> None:
    """The Segmenter protocol by behaviour, not by attribute names (isinstance on a runtime_checkable Protocol only
    looks for the names): typed identity fields, set_image, predict always a list of bool (H, W) masks, one per
    prompt in order (an empty list for no prompts), timings keyed by the suite's phases."""
    from segcore.segmenter import PHASES

    assert isinstance(seg.name, str) and seg.name
    assert isinstance(seg.num_parameters, int) and seg.num_parameters >= 0
    assert isinstance(seg.weights_id, str) and seg.weights_id
    seg.set_image(image)
    out = seg.predict(list(prompts))
    assert isinstance(out, list) and len(out) == len(prompts)
    for m in out:
        assert isinstance(m, np.ndarray) and m.dtype == np.bool_ and m.shape == image.shape[:2]
    assert seg.predict([]) == []
    one = seg.predict(list(prompts)[:1])
    assert isinstance(one, list) and len(one) == 1 and one[0].shape == out[0].shape
    assert isinstance(seg.timings, dict) and set(seg.timings) <= set(PHASES)


def _sa1b_pair(rng: np.random.Generator, stem: str, h: int, w: int, n_objects: int) -> tuple[bytes, dict]:
    """One SA-1B-layout pair: JPEG bytes and its record (ellipses on noise, RLE strings as SA-1B stores them)."""
    import io

    from PIL import Image
    from pycocotools import mask as mask_utils

    img = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    anns = []
    for j in range(n_objects):
        cx, cy = rng.uniform(14, w - 14), rng.uniform(14, h - 14)
        m = ((xx - cx) / rng.uniform(4, 12)) ** 2 + ((yy - cy) / rng.uniform(4, 10)) ** 2 <= 1
        img[m] = rng.integers(140, 255, 3)
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        anns.append({"id": int(rng.integers(1 << 30)) * 8 + j, "area": int(m.sum()),
                     "bbox": [float(v) for v in mask_utils.toBbox(rle)], "predicted_iou": 0.9, "stability_score": 0.95,
                     "point_coords": [[float(cx), float(cy)]], "crop_box": [0, 0, w, h],
                     "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}})
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    rec = {"image": {"image_id": int(stem.split("_")[1]), "width": w, "height": h, "file_name": f"{stem}.jpg"},
           "annotations": anns}
    return buf.getvalue(), rec


def make_sa1b(root, n_shards: int = 3, pairs_per_shard: int = 4, tar: bool = True, seed: int = 0,
              size=(64, 80), objects_per_image: int = 3, faults: bool = True) -> dict:
    """SA-1B layout: root/sa_00000k.tar shards (tar=True) or root/sa_00000k/ folders of sa_<id>.jpg/.json pairs.

    With `faults`, shard 0 holds one corrupt json (not json), one jpg that is not an image, one json whose RLE is
    sized for another image (every object skipped: counted) and one jpg without its json. Returns
    {"root", "good": stems of the pairs whose json reads, "all": every paired stem, "objects": good object keys}."""
    import tarfile

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    good, paired, objects = [], [], []
    n = 0
    for s in range(n_shards):
        files = []
        for i in range(pairs_per_shard):
            n += 1
            stem = f"sa_{n:06d}"
            jpg, rec = _sa1b_pair(rng, stem, h, w, objects_per_image)
            fault = faults and s == 0 and i < 3 and pairs_per_shard >= 4
            if fault and i == 0:
                js = b'{"image": {"width": 80, "height": 6'  # truncated json
            else:
                if fault and i == 2:  # RLE sized for another image
                    for a in rec["annotations"]:
                        a["segmentation"]["size"] = [h + 8, w]
                js = json.dumps(rec).encode()
            if fault and i == 1:
                jpg = b"\xff\xd8 not a jpeg"
            paired.append(stem)
            if not (fault and i == 0):
                good.append(stem)
                if not (fault and i == 2):
                    objects += [f"{stem}:{a['id']}" for a in rec["annotations"]]
            files += [(f"{stem}.jpg", jpg), (f"{stem}.json", js)]
        if faults and s == 0:
            files.append((f"sa_{999000 + s:06d}.jpg", b"\xff\xd8 lone"))  # no partner
        shard = f"sa_{s:06d}"
        if tar:
            with tarfile.open(root / f"{shard}.tar", "w") as tf:
                for name, data in files:
                    import io

                    info = tarfile.TarInfo(f"./{name}")  # SA-1B's tars store ./sa_<id>.jpg
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        else:
            (root / shard).mkdir(exist_ok=True)
            for name, data in files:
                (root / shard / name).write_bytes(data)
    return {"root": root, "good": good, "all": paired, "objects": objects}
