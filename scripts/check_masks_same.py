"""Masks of the project's FLIP on fixed objects, per backend, saved or compared bit for bit (a refactor must not move a pixel).

    python scripts/check_masks_same.py --save /tmp/before.npz      # on the old code
    python scripts/check_masks_same.py --compare /tmp/before.npz   # on the new code

Objects: the first --limit objects of ObjaScale mini and of the skimage set, both modes, backends onnxruntime and torch,
with the authors' FLIP-Tiny (flip-tiny-fused.onnx through FLIP_REFERENCE_DIR, tests/reference.py; skipped without it) and the project's weights (flip-tiny.project).
Prints per (weights, backend, mode) how many masks differ and the largest pixel difference; exit 1 on any difference.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np

DATA = ("/work/data/objascale-mini", "skimage=/work/data/skimage-objects/annotations.json::/work/data/skimage-objects/images")


def predictor(model, mode: str, backend: str):
    from flip.predictor import FlipPredictor

    if "backend" in inspect.signature(FlipPredictor).parameters:
        return FlipPredictor(model, mode=mode, device="cpu", seed=0, threads=1, backend=backend)
    model.inference_backend = backend  # the code before issue 22: a model attribute chose the backend
    return FlipPredictor(model, mode=mode, device="cpu", seed=0, threads=1)


def models():
    import flip

    from _reference import reference  # (tests/reference.py: the one FLIP_REFERENCE_DIR setting)

    ref = reference.onnx_path()
    out = {}
    if ref is not None and ref.is_file():
        out["authors"] = flip.pretrained("flip-tiny", path=ref)
    out["project"] = flip.pretrained("flip-tiny.project")
    return out


def objects(limit: int):
    from segcore.datasets import open_dataset
    from segcore.prompt import Prompt

    for spec in DATA:
        ds = open_dataset(spec)
        n = 0
        for e in ds.index():
            if n >= limit:
                break
            img = ds.load_image(e)
            ids = [o.object_id for o in e.objects][: limit - n]
            masks = ds.load_masks(e, ids)
            prompts = [Prompt.from_mask(masks[i], image_id=str(e.image_id), object_id=str(i)) for i in ids
                       if isinstance(masks.get(i), np.ndarray) and masks[i].sum() >= 4]
            n += len(prompts)
            if prompts:
                yield f"{spec.split('=')[0][-14:]}/{e.image_id}", np.ascontiguousarray(img), prompts


def run(limit: int) -> dict:
    out = {}
    data = list(objects(limit))
    for wname, model in models().items():
        for backend in ("onnxruntime", "torch"):
            for mode in ("5sigma", "hierarchical"):
                pred = predictor(model, mode, backend)
                for key, img, prompts in data:
                    pred.set_image(img)
                    ms = pred.predict(prompts)
                    for p, m in zip(prompts, ms):
                        out[f"{wname}|{backend}|{mode}|{key}|{p.meta['object_id']}"] = np.packbits(m)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path)
    g.add_argument("--compare", type=Path)
    ap.add_argument("--limit", type=int, default=12, help="objects per dataset")
    a = ap.parse_args(argv)
    masks = run(a.limit)
    if a.save:
        np.savez_compressed(a.save, **masks)
        print(f"saved {len(masks)} masks to {a.save}")
        return 0
    old = dict(np.load(a.compare))
    groups: dict = {}
    for k in sorted(set(old) | set(masks)):
        g_ = groups.setdefault("|".join(k.split("|")[:3]), [0, 0, 0])
        g_[0] += 1
        if k not in old or k not in masks:
            g_[1] += 1
            continue
        d = int(np.unpackbits(old[k] ^ masks[k]).sum())
        g_[1] += d > 0
        g_[2] = max(g_[2], d)
    bad = 0
    for k, (n, diff, worst) in groups.items():
        print(f"{k}: {n} masks, {diff} differ, largest difference {worst} px")
        bad += diff
    print("bit-identical" if not bad else f"{bad} masks differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
