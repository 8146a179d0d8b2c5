"""Held-out validation of the live model, in memory: the neutral dataset adapters and metrics, no files, no harness.

The subset is fixed (seeded by the run seed), so numbers from different steps compare the same objects.
"""
from __future__ import annotations

import numpy as np

from segcore.datasets import ItemError, Selection, open_dataset, prompts_of, select
from segcore.metrics import mask_iou

SMALL = 0.01  # objects under 1 % of the image (the paper's small-object table)


def held_out(spec: str, limit: int, seed: int):
    """[(dataset, image entry, objects)] of a fixed random subset of `limit` objects."""
    ds = open_dataset(spec)
    return ds, select(ds, Selection(limit=limit, seed=seed))


def validate(model, subset, convention: str, sampler_compat: str | None = None, seed: int = 0, device=None) -> dict:
    """Mean IoU (all, and < 1 % of the image) of `model` (an nn.Module, any mode) on a held_out() subset."""
    from ..predictor import FlipPredictor

    ds, chosen = subset
    was_training = model.training
    model.eval()
    predictor = FlipPredictor(model, mode="5sigma", seed=seed, convention=convention, device=device,
                              sampler_compat=sampler_compat)
    ious, small, failed = [], [], 0
    try:
        for entry, objs in chosen:
            try:
                image, prompts, gts, unusable = prompts_of(ds, entry, objs)
            except (ItemError, ValueError):
                failed += len(objs)
                continue
            failed += unusable
            if not prompts:
                continue
            predictor.set_image(image)
            for pred, gt, p in zip(predictor.predict(prompts), gts, prompts):
                iou = mask_iou(pred, gt)
                ious.append(iou)
                if p.area / gt.size < SMALL:
                    small.append(iou)
    finally:
        model.train(was_training)
    return {"iou": float(np.mean(ious)) if ious else float("nan"), "objects": len(ious),
            "iou_small": float(np.mean(small)) if small else float("nan"), "failed": failed}
