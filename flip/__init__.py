"""FLIP: fovea-like input patching for object-centric segmentation."""
from .prompt import Prompt, PromptError  # noqa: F401
from .segmenter import PhaseTimer, Segmenter  # noqa: F401
