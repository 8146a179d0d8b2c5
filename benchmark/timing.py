"""Timing attribution: how one image's set_image + predict seconds become per-object times in the records.

set_image phases count fully for every object (the image encoder once per object: what a user pays for one
object), the predict call's phases are shared by its k prompts; the amortised column divides the whole image
by its objects. Models report per-phase seconds (segcore.segmenter.PhaseTimer); wall time is the fallback.
"""
from __future__ import annotations

import math

import numpy as np

MODEL_PHASES = ("preprocess", "encoder", "decoder", "postprocess")  # the model's own time; data load is separate


def phase_split(after_set: dict, after_predict: dict) -> dict:
    """Phase seconds of the predict call alone. Models report the last set_image + predict; a model that
    accumulates gives after_predict ≥ after_set per phase, one that resets on predict gives the predict part."""
    out = {}
    for p, v in after_predict.items():
        s = after_set.get(p, 0.0)
        v = float(v) if v is not None else float("nan")
        out[p] = v - s if (math.isfinite(v) and v >= s) else v
    return out


def tokens_of(model, n: int):
    toks = getattr(model, "last_tokens", None)
    if toks is None:
        return [None] * n
    toks = list(np.atleast_1d(toks))
    return toks if len(toks) == n else [None] * n


def object_phases(after_set: dict, after_predict: dict, wall_set: float, wall_predict: float, k: int) -> dict:
    """Per-object phase seconds: set_image phases counted fully (the image encoder once per object), the
    predict call's phases shared by its k prompts. Falls back to wall time when the model reports nothing."""
    pred = phase_split(after_set, after_predict)
    phases = {}
    for p in MODEL_PHASES:
        s, q = after_set.get(p), pred.get(p)
        if s is None and q is None:
            continue
        phases[p] = (float(s) if s is not None else 0.0) + (float(q) / k if q is not None else 0.0)
    phases["_object"] = sum(phases.values()) if phases else wall_set + wall_predict / k
    set_total = sum(float(v) for p, v in after_set.items() if p in MODEL_PHASES) if after_set else wall_set
    pred_total = sum(float(v) for p, v in pred.items() if p in MODEL_PHASES) if pred else wall_predict
    phases["_image"] = set_total + pred_total  # whole image's model time, when predicted in one call
    return phases

def amortised(results, after_set, wall_set, k) -> float:
    """Model time of the image divided by its objects. One batched call: its image total / k; per-prompt
    calls: set_image once plus every call's predict part."""
    phases = list({id(r[2]): r[2] for r in results if r[2]}.values())  # one entry per predict call
    if not phases:
        return float("nan")
    if len(phases) == 1:  # one batched call
        return phases[0]["_image"] / k
    set_total = sum(float(v) for p, v in after_set.items() if p in MODEL_PHASES) if after_set else wall_set
    return (set_total + sum(p["_image"] - set_total for p in phases)) / k
