"""The dataset-adapter protocol: a cheap index first, then lazy samples (architecture.md).

An adapter lists its images and object ids without decoding anything (`index()`), and decodes one image and
its masks only when asked (`load_image`, `load_masks`). The harness and the trainer both build on this, so it
imports nothing heavier than numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..image import ItemError, decode_image_bytes, read_image_file  # noqa: F401  (re-exported)


class DatasetError(ValueError):
    """A dataset that cannot be opened at all (missing path, unreadable index): a configuration error."""


@dataclass(frozen=True)
class ObjectEntry:
    object_id: str
    area_px: float | None = None  # approximate pixel area from the index (None: unknown until decoded)


@dataclass(frozen=True)
class ImageEntry:
    image_id: str
    width: int | None
    height: int | None
    objects: tuple[ObjectEntry, ...]
    key: object = field(default=None, compare=False)  # adapter-private handle (row index, file name...)


@dataclass
class Sample:
    """One image with the objects selected from it. `load_image()` decodes on demand (RGB uint8 HWC)."""

    image_id: str
    load_image: Callable[[], np.ndarray]
    objects: list[ObjectEntry]
    load_masks: Callable[[Sequence[str]], dict]  # object ids -> {id: bool mask or ItemError}
    width: int | None = None
    height: int | None = None


class Dataset:
    """Base class: subclasses implement `_build_index`, `load_image(entry)` and `load_masks(entry, ids)`."""

    name: str = "dataset"
    kind: str = "base"

    def __init__(self):
        self._index: list[ImageEntry] | None = None
        # annotations in the file that never reach the index, by reason (crowd_skipped, image_not_in_file,
        # other_split): with the index's objects they add up to num_annotations()
        self.skipped: dict[str, int] = {}

    def index(self) -> list[ImageEntry]:
        """Built once; a file that cannot be indexed at all is a DatasetError (a configuration error)."""
        if self._index is None:
            try:
                self._index = self._build_index()
            except DatasetError:
                raise
            except Exception as e:
                raise DatasetError(f"dataset {self.name}: cannot read its index ({type(e).__name__}: {e})") from None
        return self._index

    def num_annotations(self) -> int:
        """Every object the file holds, including those the index leaves out (see `skipped`)."""
        indexed = len(self)  # builds the index, which fills `skipped`
        return indexed + sum(self.skipped.values())

    def mask_areas(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        """{id: (mask pixels, image pixels) | ItemError}: exact, from the decoded masks (adapters may do it cheaper)."""
        out = {}
        for oid, m in self.load_masks(entry, object_ids).items():
            out[oid] = m if isinstance(m, Exception) else (int(np.count_nonzero(m)), int(np.asarray(m).size))
        return out

    def _build_index(self) -> list[ImageEntry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_image(self, entry: ImageEntry) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}

    def __len__(self) -> int:
        """Number of objects in the index."""
        return sum(len(e.objects) for e in self.index())

    def num_images(self) -> int:
        return len(self.index())

    def sample(self, entry: ImageEntry, objects: Sequence[ObjectEntry] | None = None) -> Sample:
        objs = list(entry.objects if objects is None else objects)
        return Sample(
            image_id=entry.image_id,
            load_image=lambda: self.load_image(entry),
            objects=objs,
            load_masks=lambda ids: self.load_masks(entry, ids),
            width=entry.width,
            height=entry.height,
        )

    def __iter__(self) -> Iterator[Sample]:
        for entry in self.index():
            yield self.sample(entry)


def decode_rle(rle: dict, what: str) -> np.ndarray:
    """A COCO RLE as a bool mask; ItemError naming `what` when pycocotools cannot decode it."""
    from pycocotools import mask as mask_utils

    try:
        return mask_utils.decode(rle).astype(bool)
    except Exception as e:
        raise ItemError(f"{what}: cannot decode mask ({type(e).__name__}: {e})") from None


def masks_from_rles(rles: dict, image_id: str) -> dict:
    """{object id: bool mask or ItemError} from {object id: RLE dict, decoded mask or ItemError} (adapters' _rles)."""
    out = {}
    for oid, r in rles.items():
        if isinstance(r, dict):
            try:
                r = decode_rle(r, f"object {oid} of image {image_id}")
            except ItemError as e:
                r = e
        out[oid] = r
    return out


def areas_from_rles(rles: dict) -> dict:
    """{object id: (mask pixels, image pixels) or ItemError}: exact counts from the RLE, without decoding."""
    from pycocotools import mask as mask_utils

    out = {}
    for oid, r in rles.items():
        if isinstance(r, dict):
            out[oid] = (int(mask_utils.area(r)), int(r["size"][0]) * int(r["size"][1]))
        elif isinstance(r, np.ndarray):
            out[oid] = (int(np.count_nonzero(r)), int(r.size))
        else:
            out[oid] = r
    return out
