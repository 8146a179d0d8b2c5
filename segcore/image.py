"""Images in and out: the one check every model applies, and decoding that names the item on failure."""
from __future__ import annotations

import numpy as np


class ItemError(ValueError):
    """One image or object that cannot be decoded; the run logs it, counts it and goes on."""


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """RGB uint8 HWC, C-contiguous; grayscale is expanded, RGBA is dropped to RGB, anything else is an error."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 RGB, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected shape (H, W, 3), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def decode_image_bytes(data: bytes, what: str) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 HWC with PIL; raises ItemError naming `what` on failure."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise ItemError(f"{what}: cannot decode image ({type(e).__name__}: {e})") from None


def read_image_file(path, what: str | None = None) -> np.ndarray:
    from PIL import Image

    what = what or str(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise ItemError(f"{what}: cannot read image {path} ({type(e).__name__}: {e})") from None
