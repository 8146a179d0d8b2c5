"""Images in and out: the one check every model applies, and decoding that names the item on failure.

Every decoder here returns RGB uint8 HWC. Images stored with more than 8 bits per sample (16-bit PNG/TIFF,
common in microscopy and depth data) are scaled by their own bit depth, never clipped: PIL's convert("RGB")
clips a 16-bit value to 255, which turns almost every pixel white. Integer images deeper than 16 bits (32-bit
TIFF) hold measurements, not display values: they are stretched over their own range (min..max), since a scale
by 2^32 − 1 turns them black.

JPEG data is decoded strictly (simplejpeg, libjpeg-turbo): libjpeg's "Corrupt JPEG data" warnings, which PIL
drops while it fills the damaged part with garbage, fail the image with the reason.
"""
from __future__ import annotations

import numpy as np

MIN_SIDE = 2  # the norm frame x_n = 2·col/(W−1) − 1 needs W ≥ 2 (and H ≥ 2)


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
    if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
        # a 1-pixel side has no normalised frame (division by W−1 = 0): every model would return garbage or nothing
        raise ValueError(f"{name}: image of {image.shape[1]}×{image.shape[0]} pixels is too small; "
                         f"at least {MIN_SIDE}×{MIN_SIDE} is needed")
    return np.ascontiguousarray(image[:, :, :3])


def _scale_to_uint8(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers of `bits` bits -> uint8 by v·255/(2^bits − 1), rounded: full range maps to full range."""
    top = (1 << bits) - 1
    v = values.astype(np.uint64)
    return ((v * 255 + top // 2) // top).astype(np.uint8)


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integers of any range -> uint8 by (v − min)·255/(max − min), rounded; a constant image -> 0."""
    v = values.astype(np.int64)
    lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
    if hi == lo:
        return np.zeros(v.shape, np.uint8)
    return (((v - lo) * 510 + (hi - lo)) // (2 * (hi - lo))).astype(np.uint8)  # round half up


def _pil_bits(im) -> int | None:
    """Bits per sample of a PIL image in a 32-bit integer mode ('I'), from the file's own header when known."""
    if im.format == "PNG":  # PNG has at most 16 bits per sample; older Pillow opens 16-bit grey as 'I'
        return 16
    tags = getattr(im, "tag_v2", None)  # TIFF BitsPerSample
    if tags is not None and 258 in tags:
        b = tags[258]
        b = b[0] if isinstance(b, tuple) else b
        return int(b) if b else None
    return None


def pil_to_rgb8(im, what: str) -> np.ndarray:
    """A PIL image of any mode -> RGB uint8 HWC. High bit depths are scaled (not clipped); float images, whose
    range no header states, are refused with the reason."""
    mode = im.mode
    if mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(im).astype(np.uint16), 16)
    elif mode == "I":
        bits = _pil_bits(im)
        arr = np.asarray(im)
        if bits is None or not 8 < bits <= 32:
            raise ItemError(f"{what}: 32-bit integer image ({im.format or 'unknown format'}) with no stated bit depth; "
                            "convert it to 8 or 16 bits")
        if arr.size and arr.min() < 0:
            raise ItemError(f"{what}: integer image with negative values; convert it to unsigned 8 or 16 bits")
        if bits > 16:  # not a display depth: the data's own range
            grey = _stretch_to_uint8(arr)
        else:
            grey = _scale_to_uint8(np.minimum(arr.astype(np.int64), (1 << bits) - 1), bits)
    elif mode == "F":
        raise ItemError(f"{what}: floating-point image (mode F) has no defined value range; convert it to 8 or 16 bits")
    else:  # 8-bit modes; Pillow itself reduces 16-bit RGB(A) PNGs to 8 bits per channel by their high byte
        return np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def array_to_rgb8(arr: np.ndarray, what: str) -> np.ndarray:
    """A raw stored image array ((H,W), (H,W,1|3|4); uint8, uint16 or bool) -> RGB uint8 HWC, scaled by its dtype."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ItemError(f"{what}: raw image array of shape {arr.shape} is not (H, W), (H, W, 3) or (H, W, 4)")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = _scale_to_uint8(arr, 16)
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    else:
        raise ItemError(f"{what}: raw image array of dtype {arr.dtype}; expected uint8, uint16 or bool")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out[:, :, :3])


JPEG_MAGIC = b"\xff\xd8"


def decode_jpeg_strict(data: bytes, what: str) -> np.ndarray | None:
    """RGB uint8 HWC from JPEG bytes with every libjpeg warning an ItemError; None when simplejpeg is missing or
    the colour space is one it does not convert (CMYK/YCCK: PIL decodes those). Pixels equal PIL's (both
    libjpeg-turbo, islow DCT, fancy upsampling)."""
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise ItemError(f"{what}: cannot decode JPEG ({e})") from None
    if str(colorspace).upper() in ("CMYK", "YCCK"):
        return None
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as e:
        raise ItemError(f"{what}: damaged JPEG data ({e}); not scored") from None


def decode_image_bytes(data: bytes, what: str) -> np.ndarray:
    """JPEG/PNG/TIFF bytes -> RGB uint8 HWC (JPEG strictly, others with PIL); ItemError naming `what` on failure."""
    import io

    from PIL import Image

    data = bytes(data)
    if data[:2] == JPEG_MAGIC:
        out = decode_jpeg_strict(data, what)
        if out is not None:
            return out
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            return pil_to_rgb8(im, what)
    except ItemError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise ItemError(f"{what}: cannot decode image ({type(e).__name__}: {e})") from None


def read_image_file(path, what: str | None = None) -> np.ndarray:
    from PIL import Image

    what = what or str(path)
    try:
        with open(path, "rb") as f:
            if f.read(2) == JPEG_MAGIC:
                out = decode_jpeg_strict(JPEG_MAGIC + f.read(), f"{what} ({path})")
                if out is not None:
                    return out
    except OSError as e:
        raise ItemError(f"{what}: cannot read image {path} ({type(e).__name__}: {e})") from None
    try:
        with Image.open(path) as im:
            return pil_to_rgb8(im, f"{what} ({path})")
    except ItemError:
        raise
    except Exception as e:
        raise ItemError(f"{what}: cannot read image {path} ({type(e).__name__}: {e})") from None


def image_file_size(path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels; raises ItemError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as e:
        raise ItemError(f"cannot read the size of image {path} ({type(e).__name__}: {e})") from None
