"""Box-prompted baselines behind the Segmenter protocol, each registered in the suite's one registry.

    seg = baselines.create("sam-b")                      # official weights from the cache folder
    seg = baselines.create("mobilesam", weights="random")
    seg.set_image(rgb); masks = seg.predict(prompts)

weights: None (the official file, see baselines/weights.py), "random" (exact architecture, seeded random init;
for timing and tests; IoU is n/a), or a path. device: None picks CUDA when available.
"""
from __future__ import annotations

from segcore import registry

from . import sam, mobilesam, efficientsam, fastsam  # noqa: F401, I001  (each registers its models, in the paper's order)
from . import sam2, hqsam, slimsam  # noqa: F401, I001  (past the paper, issue 20)
from .weights import RANDOM, WeightsError, weights_dir  # noqa: F401

from .common import FAMILY


def names() -> list[str]:
    """The baselines' model names, in registration order, from the registry (the one list)."""
    return [e.model for e in registry.entries() if e.extra.get("family") == FAMILY]


PAPER_NAMES = tuple(n for n in names() if registry.get(n).extra.get("in_paper", True))
# past the paper (issue 20); EfficientViT-SAM and EdgeSAM are left out: no package carries their authors' code
NEWER_NAMES = tuple(n for n in names() if not registry.get(n).extra.get("in_paper", True))
PAPER_PARAMETERS = {n: registry.get(n).paper_parameters for n in PAPER_NAMES}
# published parameter counts of the newer models (None: none published; SlimSAM-77's is its encoder's)
PUBLISHED_PARAMETERS = {n: registry.get(n).paper_parameters for n in NEWER_NAMES}


def create(name: str, weights=None, device=None, seed: int = 0, **kwargs):
    """Build the baseline `name` (thin entry point over the registry); unknown names list the known ones."""
    model, _ = registry.split_name(name.lower())
    if model not in names():
        raise KeyError(f"unknown baseline {name!r}; baselines: {', '.join(names())}")
    return registry.create(name.lower(), weights=weights, device=device, seed=seed, **kwargs)
