"""FLIP: fovea-like input patching for object-centric segmentation.

    model = flip.create_model("flip-tiny")              # architecture, random init
    model = flip.pretrained("flip-tiny.authors")         # with weights, through the suite's one registry
    seg = flip.create_segmenter("flip-tiny-h.project")   # behind the Segmenter protocol

Importing flip registers FLIP's names in the suite registry (flip/entries.py, torch-free) and nothing else: torch and
the model load on first use of a name below; the environment is never touched (the OpenMP wait policy is the
command-line entry points' business: segcore/waitpolicy.py).
"""
from __future__ import annotations

from ._lazy import lazy_attributes
from . import entries  # noqa: F401  (FLIP's registry entries: data only, builders load the model lazily)

_NAMES = {  # name -> module that defines it
    "create_model": ".variants", "list_architectures": ".variants",
    "WeightImportError": ".weights", "load_weights": ".weights", "pretrained": ".segmenter",
    "FlipPredictor": ".predictor",
    "FlipSegmenter": ".segmenter", "create_segmenter": ".segmenter", "load_flip": ".segmenter",
}
__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
