"""The one FLIP HDF5 layout (docs/flip.md §10): written by objascale and tests, read by the dataset adapter.

Datasets, in the authors' converter's names:
  rgb_images (N_img,) vlen uint8        JPEG bytes          instance_masks (N_obj,) vlen uint8   PNG bytes
  positions (N_obj,5) f32               rho, norm frame     instance_mask_bboxes (N_obj,4) f32  inclusive px
  instance_masks_images (N_obj,1) i64   owner image         image_instance_indices (N_img,2)    [first, count]
  sequence_indices (N_img,2) i64        [image, 1]          coco_image_ids, license_ids, file_names, ... (N_img,)

Integrity: `rgb_images_sha256` and `instance_masks_sha256` hold the sha256 (hex) of each stored image and mask
row; the reader checks them when present, so a damaged file (a run of zeroed bytes decodes without any
warning) fails the image instead of scoring it. HDF5's fletcher32 filter cannot cover variable-length rows.

Every dataset is chunked with an unlimited first axis, so shards merge with the standard h5py idiom
(`d.resize(n + k, axis=0); d[n:] = src[:]`), as the authors' own append scripts do.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .image import ItemError
from .prompt import rho_from_mask

REQUIRED = ("rgb_images", "instance_masks", "image_instance_indices")
GZIP = dict(compression="gzip", compression_opts=5)
# name -> (per-row shape, dtype kind, gzip?); "bytes" / "str" are variable-length
OBJECT_FIELDS = {
    "instance_masks": ((), "bytes", False),
    "instance_masks_sha256": ((), "str", False),
    "positions": ((5,), np.float32, True),
    "instance_mask_bboxes": ((4,), np.float32, True),
    "instance_masks_images": ((1,), np.int64, True),
}
IMAGE_FIELDS = {
    "rgb_images": ((), "bytes", False),
    "rgb_images_sha256": ((), "str", False),
    "image_instance_indices": ((2,), np.int64, True),
    "sequence_indices": ((2,), np.int64, True),
    "coco_image_ids": ((), np.int64, False),
    "license_ids": ((), np.uint8, False),
    "file_names": ((), "str", False),
    "flickr_urls": ((), "str", False),
    "coco_urls": ((), "str", False),
    "transform_notes": ((), "str", False),
}
CHUNK_ROWS = 256


def digest(data) -> str:
    """sha256 (hex) of one stored row: bytes, or the uint8 array h5py returns for a vlen row."""
    import hashlib

    raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8).tobytes()
    return hashlib.sha256(raw).hexdigest()


def check_digest(f, name: str, row: int, data, what: str) -> None:
    """ItemError when `name`_sha256 holds a digest for this row and the stored bytes do not match it."""
    d = f.get(f"{name}_sha256")
    if d is None or row >= d.shape[0]:
        return
    want = d[row]
    want = want.decode() if isinstance(want, bytes) else str(want)
    if want and want != digest(data):
        raise ItemError(f"{what}: stored bytes do not match their sha256 in {name}_sha256 (damaged file); not scored")


def _dtype(kind):
    import h5py

    if kind == "bytes":
        return h5py.vlen_dtype(np.dtype("uint8"))
    if kind == "str":
        return h5py.string_dtype("utf-8")
    return np.dtype(kind)


def encode_png(mask: np.ndarray) -> bytes:
    """A bool/0-1 mask as the PNG of a uint8 0/255 image (the authors' stored form)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def inclusive_bbox(mask: np.ndarray) -> np.ndarray:
    """[x_min, y_min, x_max, y_max] of the mask's pixels, inclusive indices; zeros for an empty mask."""
    m = np.asarray(mask) > 0
    cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
    if cols.size == 0:
        return np.zeros(4, np.float32)
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float32)


class FlipHdf5Writer:
    """Appends images with their objects to an open h5py.File in the FLIP layout (every dataset resizable).

        with h5py.File(tmp, "w") as f:
            w = FlipHdf5Writer(f, dataset_name="mine", split="eval")
            w.add_image(jpeg_bytes, [png_bytes, ...], positions=[rho, ...], coco_image_id=7)
    """

    def __init__(self, f, dataset_name: str = "", split: str = "", metadata: dict | None = None):
        self.f = f
        for name, (shape, kind, gz) in {**OBJECT_FIELDS, **IMAGE_FIELDS}.items():
            if name not in f:
                f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=_dtype(kind),
                                 chunks=(CHUNK_ROWS, *shape), **(GZIP if gz else {}))
        meta = f.require_group("metadata")
        meta.attrs["dataset_name"] = dataset_name
        meta.attrs["type"] = split
        meta.attrs["bbox_convention"] = "instance_mask_bboxes: [x_min, y_min, x_max, y_max], inclusive pixel indices"
        for k, v in (metadata or {}).items():
            meta.attrs[k] = v

    def _append(self, name: str, rows: list) -> None:
        d = self.f[name]
        n = d.shape[0]
        d.resize(n + len(rows), axis=0)
        for k, r in enumerate(rows):  # vlen rows are written one by one (h5py has no bulk ragged write)
            d[n + k] = r

    def add_image(self, image_bytes: bytes, mask_bytes: Sequence[bytes], positions: Sequence, bboxes=None,
                  coco_image_id: int | None = None, license_id: int = 0, file_name: str = "",
                  flickr_url: str = "", coco_url: str = "", transform_note: str = "") -> int:
        """Append one image and its objects; returns the image's row."""
        i = self.f["rgb_images"].shape[0]
        first = self.f["instance_masks"].shape[0]
        k = len(mask_bytes)
        if len(positions) != k or (bboxes is not None and len(bboxes) != k):
            raise ValueError(f"image {i}: {k} masks but {len(positions)} positions")
        self._append("instance_masks", [np.frombuffer(bytes(b), np.uint8) for b in mask_bytes])
        self._append("instance_masks_sha256", [digest(b) for b in mask_bytes])
        self._append("positions", [np.asarray(p, np.float32) for p in positions])
        self._append("instance_mask_bboxes", [np.asarray(b, np.float32) for b in (bboxes if bboxes is not None else [np.zeros(4)] * k)])
        self._append("instance_masks_images", [np.array([i], np.int64)] * k)
        self._append("rgb_images", [np.frombuffer(bytes(image_bytes), np.uint8)])
        self._append("rgb_images_sha256", [digest(image_bytes)])
        self._append("image_instance_indices", [np.array([first, k], np.int64)])
        self._append("sequence_indices", [np.array([i, 1], np.int64)])
        self._append("coco_image_ids", [i if coco_image_id is None else int(coco_image_id)])
        self._append("license_ids", [int(license_id)])
        for name, v in (("file_names", file_name), ("flickr_urls", flickr_url), ("coco_urls", coco_url),
                        ("transform_notes", transform_note)):
            self._append(name, [v])
        return i


def merge_files(out, inputs: Sequence) -> None:
    """Concatenate FLIP HDF5 files (shards) into `out` with resize-and-append; object indices are re-based."""
    import h5py

    with h5py.File(out, "a") as dst:
        FlipHdf5Writer(dst)
        for path in inputs:
            with h5py.File(path, "r") as src:
                n_img, n_obj = dst["rgb_images"].shape[0], dst["instance_masks"].shape[0]
                for name in {**OBJECT_FIELDS, **IMAGE_FIELDS}:
                    if name not in src:
                        continue
                    data = src[name][:]
                    if name == "image_instance_indices":
                        data = data + np.array([n_obj, 0])
                    elif name in ("instance_masks_images",):
                        data = data + n_img
                    elif name == "sequence_indices":
                        data = data + np.array([n_img, 0])
                    d = dst[name]
                    n = d.shape[0]
                    d.resize(n + len(data), axis=0)
                    if h5py.check_vlen_dtype(d.dtype) is not None and h5py.check_string_dtype(d.dtype) is None:
                        for k, row in enumerate(data):  # equal-length byte rows would broadcast as 2-D
                            d[n + k] = row
                    else:
                        d[n:] = data


def write_flip_hdf5(path, images: Sequence[np.ndarray], masks_per_image: Sequence[Sequence[np.ndarray]],
                    image_ids=None, dataset_name: str = "", split: str = "") -> None:
    """Write a file in the authors' layout from arrays (tests, converters). JPEG q95 / PNG, atomic."""

    import h5py

    from .atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        w = FlipHdf5Writer(f, dataset_name, split)
        for i, (img, masks) in enumerate(zip(images, masks_per_image)):
            w.add_image(encode_jpeg(img), [encode_png(m) for m in masks],
                        [rho_from_mask(m) if np.any(m) else np.zeros(5) for m in masks],
                        bboxes=[inclusive_bbox(m) for m in masks],
                        coco_image_id=i if image_ids is None else int(image_ids[i]))


def decode_mask(data, what: str) -> np.ndarray:
    """One stored mask -> bool, whatever the writer used, as the authors' readers accept:
    PNG bytes of 0/255 (threshold 128) or of 0/1 (any nonzero), or a raw (H,W) / (1,H,W) array."""
    arr = np.asarray(data)
    if arr.ndim >= 2:  # raw array (the training loader's (N,1,H,W) layout gives (1,H,W) rows)
        arr = arr.reshape(arr.shape[-2:]) if arr.ndim == 3 and arr.shape[0] == 1 else arr
        if arr.ndim != 2:
            raise ItemError(f"{what}: raw mask of shape {np.asarray(data).shape} is not (H, W) or (1, H, W)")
        return arr > (128 if arr.dtype == np.uint8 and arr.max(initial=0) > 1 else 0)  # (raw rows: as before)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(arr.tobytes())) as im:
            img = np.asarray(im)
    except Exception as e:
        raise ItemError(f"{what}: cannot decode mask PNG ({type(e).__name__}: {e})") from None
    if img.ndim == 3:
        img = img[..., 0]
    return mask_to_bool(img)


def mask_to_bool(arr: np.ndarray) -> np.ndarray:
    """A stored mask's values -> bool, the one rule for every mask reader: 0/1 masks (any bit depth) by any
    nonzero value, 8-bit 0/255 masks above 128, deeper ones above half their largest value."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr
    top = arr.max(initial=0)
    if top <= 1:
        return arr > 0
    return arr > (128 if arr.dtype == np.uint8 else top / 2)
