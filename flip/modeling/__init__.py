"""FLIP model components, one file each (segment-anything style)."""
from segcore.segmenter import count_parameters  # noqa: F401  (one definition, re-exported for model code)

from .attention import block_diagonal_mask, packed_attention  # noqa: F401
from .config import FlipConfig  # noqa: F401
from .decoder import KVCache, PixelDecoder  # noqa: F401
from .flip import FLIP  # noqa: F401
from .packing import TokenBatch  # noqa: F401
from .patch_embed import PatchEmbedding  # noqa: F401
from .position import relative_embedding  # noqa: F401
