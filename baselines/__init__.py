"""Box-prompted baselines behind the Segmenter protocol, created by name (timm-style registry).

    seg = baselines.create("sam-b")                 # official weights from the weights folder (or downloaded)
    seg = baselines.create("mobilesam", weights="random")
    seg.set_image(rgb); masks = seg.predict(prompts)

weights: None (the official file, see baselines.weights), "random" (exact architecture, random init; for
timing and tests), or a path. device: None picks CUDA when available.
"""
from __future__ import annotations

from typing import Callable

from .weights import RANDOM, WeightsError, weights_dir  # noqa: F401


def _sam(name, **kw):
    from .sam import create_sam

    return create_sam(name, **kw)


def _mobilesam(name, **kw):
    from .mobilesam import create_mobilesam

    return create_mobilesam(name, **kw)


def _efficientsam(name, **kw):
    from .efficientsam import create_efficientsam

    return create_efficientsam(name, **kw)


def _fastsam(name, **kw):
    from .fastsam import create_fastsam

    return create_fastsam(name, **kw)


# name → (builder, parameter count reported in the FLIP paper)
_REGISTRY: dict[str, tuple[Callable, float]] = {
    "sam-b": (_sam, 93.7e6),
    "sam-l": (_sam, 312.3e6),
    "sam-h": (_sam, 641.1e6),
    "mobilesam": (_mobilesam, 10.13e6),
    "efficientsam-t": (_efficientsam, 10.22e6),
    "efficientsam-s": (_efficientsam, 26.41e6),
    "fastsam-s": (_fastsam, 11.8e6),
    "fastsam-x": (_fastsam, 72.2e6),
}
PAPER_PARAMETERS = {k: v[1] for k, v in _REGISTRY.items()}


def available() -> list[str]:
    return list(_REGISTRY)


def create(name: str, weights=None, device=None, **kwargs):
    """Build the baseline `name`; unknown names list the known ones."""
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown baseline {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[key][0](key, weights=weights, device=device, **kwargs)
