"""A small real-image object set in COCO format, from the photographs and micrographs bundled with scikit-image.

    python scripts/make_skimage_objects.py --out data/skimage-objects [--source PATH]

Images: coins.png (photograph, 24 coins), hubble_deep_field.jpg (telescope image: stars and galaxies, mostly objects
< 1 % of the image), ihc.png (immunohistochemistry micrograph: stained nuclei). Masks are derived, not annotated: the
connected components of an Otsu threshold (bright objects for coins/hubble, the dark hematoxylin stain for ihc), holes
filled, components of at least --min-pixels kept. They are plausible object masks for timing and agreement studies,
not ground truth for accuracy claims. --source: an installed `skimage/data` folder or a scikit-image wheel
(`pip download scikit-image --no-deps`); default: the installed package.
The output folder (images/ + annotations.json, COCO RLE) is read by the harness as `FILE.json::IMAGES`.
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from segcore.atomic import atomic_write_text

IMAGES = {"coins.png": "bright", "hubble_deep_field.jpg": "bright", "ihc.png": "dark-hematoxylin"}


def read_source(source: str | None, name: str) -> np.ndarray:
    if source and source.endswith(".whl"):
        with zipfile.ZipFile(source) as z:
            data = z.read(f"skimage/data/{name}")
    else:
        if source:
            root = Path(source)
        else:
            import skimage.data

            root = Path(skimage.data.__file__).parent
        data = (root / name).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, 256)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * (edges[:-1] + edges[1:]) / 2)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    return float(edges[1:][np.argmax(w0 * w1 * (mu0 - mu1) ** 2)])


def object_masks(img: np.ndarray, kind: str, min_pixels: int):
    f = img.astype(np.float32)
    if kind == "bright":
        v = f.mean(2)
        fg = v > otsu(v)
    else:  # hematoxylin: blue-dark; a stain ratio that is high on nuclei
        v = f[..., 2] - 0.5 * (f[..., 0] + f[..., 1]) - 0.3 * f.mean(2)
        fg = v > otsu(v)
    fg = ndimage.binary_opening(fg, iterations=1)
    lab, n = ndimage.label(fg)
    for i in range(1, n + 1):
        m = ndimage.binary_fill_holes(lab == i)
        if m.sum() >= min_pixels:
            yield m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", default=None, help="skimage/data folder or scikit-image wheel (default: installed)")
    ap.add_argument("--min-pixels", type=int, default=12)
    args = ap.parse_args(argv)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    coco = dict(images=[], annotations=[], categories=[dict(id=1, name="object")])
    for image_id, (name, kind) in enumerate(IMAGES.items(), 1):
        img = read_source(args.source, name)
        fname = Path(name).stem + ".png"
        Image.fromarray(img).save(args.out / "images" / fname)
        h, w = img.shape[:2]
        coco["images"].append(dict(id=image_id, file_name=fname, width=w, height=h))
        count = 0
        for m in object_masks(img, kind, args.min_pixels):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            ys, xs = np.nonzero(m)
            coco["annotations"].append(dict(id=len(coco["annotations"]) + 1, image_id=image_id, category_id=1,
                                            segmentation=dict(size=rle["size"], counts=rle["counts"].decode()),
                                            area=int(m.sum()), iscrowd=0,
                                            bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]))
            count += 1
        print(f"{name}: {w}x{h}, {count} objects ({kind})")
    atomic_write_text(args.out / "annotations.json", json.dumps(coco))
    print(f"{len(coco['annotations'])} objects -> {args.out / 'annotations.json'}")


if __name__ == "__main__":
    main()
