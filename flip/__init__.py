"""FLIP: fovea-like input patching for object-centric segmentation."""
from .registry import create_model, list_models  # noqa: F401
from .weights import WeightImportError, load_weights, pretrained  # noqa: F401
from .predictor import FlipPredictor  # noqa: F401
from .segmenter_flip import FlipSegmenter, create_segmenter  # noqa: F401
