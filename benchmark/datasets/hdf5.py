"""The FLIP HDF5 layout (flip-spec §10): JPEG bytes per image, PNG bytes per object, index arrays.

The authors' evaluation files open here unchanged, so their six Table 1 columns reproduce without conversion.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, decode_image_bytes

REQUIRED = ("rgb_images", "instance_masks", "image_instance_indices")


def decode_mask_png(data: bytes, what: str) -> np.ndarray:
    """PNG of a uint8 0/255 mask -> bool (value > 128, as the authors' reader does)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            arr = np.asarray(im)
    except Exception as e:
        raise ItemError(f"{what}: cannot decode mask PNG ({type(e).__name__}: {e})") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr > 128


class FlipHdf5Dataset(Dataset):
    kind = "flip-hdf5"

    def __init__(self, path, name: str | None = None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"HDF5 file not found: {self.path}")
        try:
            import h5py

            with h5py.File(self.path, "r") as f:
                missing = [k for k in REQUIRED if k not in f]
                self._has_sizes = "relative_mask_sizes" in f
        except OSError as e:
            raise DatasetError(f"cannot open HDF5 file {self.path}: {e}") from None
        if missing:
            raise DatasetError(f"{self.path} is not a FLIP HDF5 file: missing datasets {missing} (spec §10)")
        self.name = name or self.path.stem
        self._file = None  # opened lazily in each process (h5py handles do not pickle)

    @property
    def file(self):
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_file"] = None
        return d

    def _build_index(self) -> list[ImageEntry]:
        f = self.file
        idx = np.asarray(f["image_instance_indices"][:], dtype=np.int64)
        ids = np.asarray(f["coco_image_ids"][:]) if "coco_image_ids" in f else None
        entries = []
        for i, (first, count) in enumerate(idx):
            objs = tuple(ObjectEntry(str(j)) for j in range(int(first), int(first) + int(count)))
            if not objs:
                continue
            # ids from the file can repeat across splits; the row index keeps them unique
            image_id = f"{i}" if ids is None else f"{i}:{int(ids[i])}"
            entries.append(ImageEntry(image_id, None, None, objs, key=i))
        return entries

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        i = entry.key
        try:
            data = self.file["rgb_images"][i]
        except Exception as e:
            raise ItemError(f"image {entry.image_id}: cannot read from {self.path} ({e})") from None
        if data.ndim == 3:  # the loader also accepts raw arrays
            return np.ascontiguousarray(data.astype(np.uint8))
        return decode_image_bytes(data, f"image {entry.image_id}")

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        out = {}
        for oid in object_ids:
            what = f"object {oid} of image {entry.image_id}"
            try:
                data = self.file["instance_masks"][int(oid)]
                out[oid] = np.asarray(data) > 128 if data.ndim == 2 else decode_mask_png(data, what)
            except ItemError as e:
                out[oid] = e
            except Exception as e:
                out[oid] = ItemError(f"{what}: cannot read mask ({type(e).__name__}: {e})")
        return out

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path)}


def write_flip_hdf5(path, images: Sequence[np.ndarray], masks_per_image: Sequence[Sequence[np.ndarray]], image_ids=None) -> None:
    """Write a small file in the authors' layout (used by tests and converters). JPEG q95 / PNG, like the reference."""
    import h5py
    from PIL import Image

    from flip.prompt import rho_from_mask

    def enc(arr, fmt, **kw):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **kw)
        return np.frombuffer(buf.getvalue(), dtype=np.uint8)

    vl = h5py.vlen_dtype(np.uint8)
    n_obj = sum(len(m) for m in masks_per_image)
    tmp = Path(str(path) + ".tmp")
    with h5py.File(tmp, "w") as f:
        rgb = f.create_dataset("rgb_images", (len(images),), dtype=vl)
        inst = f.create_dataset("instance_masks", (n_obj,), dtype=vl)
        pos = np.zeros((n_obj, 5), np.float32)
        owner = np.zeros((n_obj, 1), np.int64)
        ranges = np.zeros((len(images), 2), np.int64)
        k = 0
        for i, (img, masks) in enumerate(zip(images, masks_per_image)):
            rgb[i] = enc(img, "JPEG", quality=95)
            ranges[i] = (k, len(masks))
            for m in masks:
                inst[k] = enc((np.asarray(m) > 0).astype(np.uint8) * 255, "PNG")
                pos[k] = rho_from_mask(m) if np.any(m) else 0
                owner[k] = i
                k += 1
        f.create_dataset("positions", data=pos, compression="gzip", compression_opts=5)
        f.create_dataset("instance_masks_images", data=owner, compression="gzip", compression_opts=5)
        f.create_dataset("image_instance_indices", data=ranges, compression="gzip", compression_opts=5)
        f.create_dataset("sequence_indices", data=np.stack([np.arange(len(images)), np.ones(len(images))], 1).astype(np.int64))
        ids = np.arange(len(images)) if image_ids is None else np.asarray(image_ids)
        f.create_dataset("coco_image_ids", data=ids.astype(np.int64))
    import os

    os.replace(tmp, path)
