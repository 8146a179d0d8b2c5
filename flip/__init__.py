"""FLIP: fovea-like input patching for object-centric segmentation.

    model = flip.create_model("flip-tiny")              # architecture, random init
    model = flip.pretrained("flip-tiny.authors")         # with weights, through the suite's one registry
    seg = flip.create_segmenter("flip-tiny-h.project")   # behind the Segmenter protocol
"""
from .runtime import apply_wait_policy as _apply_wait_policy; _apply_wait_policy()  # first, before torch loads (flip/runtime.py)
from .variants import create_model, list_models  # noqa: F401
from .weights import WeightImportError, load_weights, pretrained  # noqa: F401
from .predictor import FlipPredictor  # noqa: F401
from .segmenter import FlipSegmenter, create_segmenter, load_flip  # noqa: F401
