"""Reads the FLIP HDF5 layout (segcore/hdf5.py, docs/flip.md §10): the authors' evaluation files open here
unchanged, so their six Table 1 columns reproduce without conversion."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..hdf5 import REQUIRED, check_digest, decode_mask
from ..image import array_to_rgb8
from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, decode_image_bytes


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
            raise DatasetError(f"{self.path} is not a FLIP HDF5 file: missing datasets {missing} (docs/flip.md §10)")
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
        n_masks = int(f["instance_masks"].shape[0])
        if idx.ndim != 2 or idx.shape[1] != 2:
            raise DatasetError(f"{self.path}: image_instance_indices has shape {idx.shape}, expected (N, 2)")
        # each mask row belongs to at most one image: overlapping or out-of-range [first, count] would score a mask
        # under the wrong image
        bad = [i for i, (first, count) in enumerate(idx) if first < 0 or count < 0 or first + count > n_masks]
        if bad:
            raise DatasetError(f"{self.path}: image_instance_indices of image row(s) {bad[:10]} point outside the "
                               f"{n_masks} stored masks")
        owner = np.full(n_masks, -1, np.int64)
        for i, (first, count) in enumerate(idx):
            taken = owner[first:first + count]
            if (taken >= 0).any():
                j = int(taken[taken >= 0][0])
                raise DatasetError(f"{self.path}: image rows {j} and {i} both claim mask row(s) "
                                   f"{(np.flatnonzero(taken >= 0) + first)[:5].tolist()} (duplicated objects)")
            owner[first:first + count] = i
        ids = np.asarray(f["coco_image_ids"][:]) if "coco_image_ids" in f else None
        entries = []
        for i, (first, count) in enumerate(idx):
            objs = tuple(ObjectEntry(str(j)) for j in range(int(first), int(first) + int(count)))
            if not objs:
                continue
            # ids from the file can repeat across splits; the row index keeps them unique
            image_id = f"{i}" if ids is None else f"{i}:{int(ids[i])}"
            entries.append(ImageEntry(image_id, None, None, objs, key=i))
        orphans = int((owner < 0).sum())
        self.skipped = {"image_not_in_file": orphans} if orphans else {}
        return entries

    def num_annotations(self) -> int:
        return int(self.file["instance_masks"].shape[0])

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        i = entry.key
        try:
            data = self.file["rgb_images"][i]
        except Exception as e:
            raise ItemError(f"image {entry.image_id}: cannot read from {self.path} ({e})") from None
        if np.asarray(data).ndim >= 2:  # the authors' loader also accepts raw (H, W[, C]) arrays
            return array_to_rgb8(data, f"image {entry.image_id}")
        check_digest(self.file, "rgb_images", i, data, f"image {entry.image_id}")
        return decode_image_bytes(data, f"image {entry.image_id}")

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        out = {}
        for oid in object_ids:
            what = f"object {oid} of image {entry.image_id}"
            try:
                data = self.file["instance_masks"][int(oid)]
                if np.asarray(data).ndim == 1:
                    check_digest(self.file, "instance_masks", int(oid), data, what)
                out[oid] = decode_mask(data, what)
            except ItemError as e:
                out[oid] = e
            except Exception as e:
                out[oid] = ItemError(f"{what}: cannot read mask ({type(e).__name__}: {e})")
        return out

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path)}
