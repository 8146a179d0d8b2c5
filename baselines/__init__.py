"""Box-prompted baselines behind the Segmenter protocol, each registered in the suite's one registry.

    seg = baselines.create("sam-b")                      # official weights from the cache folder
    seg = baselines.create("mobilesam", weights="random")
    seg.set_image(rgb); masks = seg.predict(prompts)

weights: None (the official file, see baselines/weights.py), "random" (exact architecture, seeded random init;
for timing and tests; IoU is n/a), or a path. device: None picks CUDA when available.
"""
from __future__ import annotations

from segcore import registry

from . import efficientsam, fastsam, mobilesam, sam  # noqa: F401  (each registers its models)
from .weights import RANDOM, WeightsError, weights_dir  # noqa: F401

NAMES = ("sam-b", "sam-l", "sam-h", "mobilesam", "efficientsam-t", "efficientsam-s", "fastsam-s", "fastsam-x")
PAPER_PARAMETERS = {n: registry.get(n).paper_parameters for n in NAMES}


def available() -> list[str]:
    return list(NAMES)


def create(name: str, weights=None, device=None, seed: int = 0, **kwargs):
    """Build the baseline `name` (thin entry point over the registry); unknown names list the known ones."""
    model, _ = registry.split_name(name.lower())
    if model not in NAMES:
        raise KeyError(f"unknown baseline {name!r}; available: {', '.join(NAMES)}")
    return registry.create(name.lower(), weights=weights, device=device, seed=seed, **kwargs)
