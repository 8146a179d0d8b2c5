"""FLIP model components, one file each (segment-anything style): plain torch modules (the onnxruntime runtime is
flip/ort/). Names load on first use, so `flip.modeling.config` (FlipConfig) can be read without importing torch."""
from __future__ import annotations

from .._lazy import lazy_attributes

_NAMES = {  # name -> module that defines it
    "count_parameters": "segcore.segmenter",  # one definition, re-exported for model code
    "block_diagonal_mask": ".attention", "packed_attention": ".attention", "FlipConfig": ".config",
    "KVCache": ".decoder", "PixelDecoder": ".decoder", "FLIP": ".flip", "TokenBatch": ".packing",
    "PatchEmbedding": ".patch_embed", "relative_embedding": ".position",
}
__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
