"""FLIP: fovea-like input patching for object-centric segmentation."""
from .runtime import apply_wait_policy as _apply_wait_policy; _apply_wait_policy()  # first, before torch loads (flip/runtime.py)
from .registry import create_model, list_models  # noqa: F401
from .weights import WeightImportError, load_weights, pretrained  # noqa: F401
from .predictor import FlipPredictor  # noqa: F401
from .segmenter_flip import FlipSegmenter, create_segmenter  # noqa: F401
