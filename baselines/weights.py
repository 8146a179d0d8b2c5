"""Baseline weight files, through the suite's one weights hub (segcore/hub.py).

Order: explicit path → the cache folder ($FLIP_SUITE_CACHE/baselines, default ~/.cache/flip-suite/baselines)
→ a download, only when asked (`--download` / FLIP_SUITE_DOWNLOAD=1) and verified by sha256. Files are read
without running code from them (segcore.safe_load). Every failure names the file, the folder and the URL.
"""
from __future__ import annotations

import os
from pathlib import Path

from segcore import hub
from segcore.hub import RANDOM, WeightsError  # noqa: F401  (re-exported for the adapters)

FAMILY = "baselines"
OFFICIAL: list[hub.WeightFile] = []  # every official file the adapters declare (weights ids label them)


def WeightsSpec(filename: str, url: str, zipped_url: str | None = None, sha256: str | None = None) -> hub.WeightFile:
    """An official upstream file of a baseline (sha256: the published digest, when known)."""
    wf = hub.WeightFile(filename, FAMILY, "official", sha256, url, zipped_url)
    OFFICIAL.append(wf)
    return wf


def weights_dir() -> Path:
    return hub.cache_dir(FAMILY)


def resolve(model: str, spec: hub.WeightFile, weights: str | os.PathLike | None, download: bool | None = None) -> Path:
    """An existing local file for `weights` (None = the official file of `spec`)."""
    return hub.resolve(model, (spec,), path=weights, download=download)[0]


def weights_id(path: Path) -> str:
    """'official:<file>@sha256:<12 hex>' when the digest is a published one, else 'file:...'."""
    return hub.weights_id([path], OFFICIAL)


def load_state_dict(model: str, path: Path, key: str | None = None) -> dict:
    """The state dict of a checkpoint, read on CPU without running code from it; `key` unwraps {key: sd}."""
    from segcore.safe_load import UnsafeFileError, safe_torch_load

    try:
        obj = safe_torch_load(path)
    except UnsafeFileError as e:
        raise WeightsError(f"{model}: {e}") from None
    if key is not None and isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
        obj = obj[key]
    if not isinstance(obj, dict):
        from segcore.safe_load import describe_refused

        raise WeightsError(f"{model}: {path}: " + (describe_refused(obj) or f"holds a {type(obj).__name__}, expected a state dict"))
    return obj


def check_state_dict(model: str, expected: dict, got: dict, source: str, limit: int = 8) -> None:
    """Raise WeightsError naming missing keys, unexpected keys and shape mismatches (first `limit` of each)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and hasattr(got[k], "shape") and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def fmt(label, items):
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{len(items)} {label}: {', '.join(items[:limit])}{more}" if items else ""

    parts = [p for p in (fmt("missing keys", missing), fmt("unexpected keys", unexpected), fmt("shape mismatches", shapes)) if p]
    raise WeightsError(f"{model}: {source} does not match the {model} architecture; " + "; ".join(parts))
