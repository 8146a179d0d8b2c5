"""Dataset adapters behind one lazy interface, plus selection (limit, area range, shard).

open_dataset(spec) accepts:
  DIR with annotations.json         ObjaScale folder (COCO json + images/ + metadata); its eval split unless
                                    DIR#train or DIR#all
  FILE.json[::IMAGE_DIR]            any COCO-format file (COCO, LVIS) with its image folder
  FILE.h5 / FILE.hdf5               the FLIP HDF5 layout
  NAME=<any of the above>           the same, shown as NAME in tables
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
from pathlib import Path

import numpy as np

from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, Sample
from .coco import CocoDataset, ObjaScaleDataset, segmentation_to_rle
from ..hdf5 import write_flip_hdf5
from .hdf5 import FlipHdf5Dataset

__all__ = [
    "Dataset", "DatasetError", "ImageEntry", "ItemError", "ObjectEntry", "Sample", "CocoDataset", "ObjaScaleDataset",
    "FlipHdf5Dataset", "open_dataset", "Selection", "select", "segmentation_to_rle", "write_flip_hdf5",
]


def parse_spec(spec: str) -> tuple[str | None, Path, str, str | None]:
    """[NAME=]PATH[#SPLIT][::IMAGE_DIR] → (name, path, split, image_root); see the module doc."""
    name = None
    if "=" in spec and not Path(spec).exists():
        name, spec = spec.split("=", 1)
    split = "eval"
    if "#" in spec and not Path(spec).exists():
        spec, split = spec.rsplit("#", 1)
    image_root = None
    if "::" in spec:
        spec, image_root = spec.split("::", 1)
    return name, Path(spec), split, image_root


DATA_SUFFIXES = {".png", ".jpg", ".jpeg", ".json", ".hdf5", ".h5", ".webp", ".bmp", ".tif", ".tiff"}


def dataset_fingerprint(spec: str) -> str:
    """Cheap content identity of a dataset spec: names and sizes of its image, mask and annotation files.

    Part of the benchmark's default run name and checked on resume, so records are never reused for a
    re-rendered or edited dataset. Logs, manifests and configs (which carry timings) are left out; a missing
    path hashes to the empty digest (open_dataset reports it).
    """
    _, path, _, image_root = parse_spec(spec)
    h = hashlib.sha256()
    for root in (path, Path(image_root) if image_root else None):
        if root is None:
            continue
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                           and p.parent.name != "logs" and p.name not in ("manifest.json", "config.json"))
        else:
            files = [root] if root.is_file() else []
        for f in files:
            h.update(f"{f.relative_to(root) if root.is_dir() else f.name}:{f.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def open_dataset(spec: str) -> Dataset:
    """Open a dataset from a path spec (see module doc). Raises DatasetError before any work is done."""
    name, p, split, image_root = parse_spec(spec)
    if not p.exists():
        raise DatasetError(f"dataset path does not exist: {p}")
    if p.is_dir():
        if (p / "annotations.json").is_file():
            return ObjaScaleDataset(p, name=name, split=split)
        h5 = sorted(list(p.glob("*.hdf5")) + list(p.glob("*.h5")))
        if len(h5) == 1:
            return FlipHdf5Dataset(h5[0], name=name or p.name)
        raise DatasetError(f"{p}: no annotations.json and not exactly one .hdf5 file inside; cannot tell the format")
    if p.suffix.lower() in (".h5", ".hdf5"):
        return FlipHdf5Dataset(p, name=name)
    if p.suffix.lower() == ".json":
        return CocoDataset(p, image_root, name=name)
    raise DatasetError(f"{p}: unknown dataset format (expected a folder, .json or .hdf5)")


@dataclass(frozen=True)
class Selection:
    limit: int | None = None  # fixed random sample of this many objects
    seed: int = 0
    min_area_ratio: float | None = None  # relative mask area |m| / (H·W), inclusive bounds
    max_area_ratio: float | None = None
    shard: tuple[int, int] = (0, 1)  # (k, n): images whose position in the index ≡ k mod n

    def area_ok(self, ratio: float) -> bool:
        if self.min_area_ratio is not None and ratio < self.min_area_ratio:
            return False
        if self.max_area_ratio is not None and ratio > self.max_area_ratio:
            return False
        return True


def select(dataset: Dataset, sel: Selection) -> list[tuple[ImageEntry, list[ObjectEntry]]]:
    """Images with their chosen objects. Area bounds are pre-applied where the index knows an area and the
    image size (COCO `area`); the exact test on the decoded mask happens again in the runner. The limit picks
    a fixed random subset of objects (seeded), the same for every shard and every model."""
    chosen = []
    for entry in dataset.index():
        objs = []
        for o in entry.objects:
            if o.area_px is not None and entry.width and entry.height:
                r = o.area_px / (entry.width * entry.height)
                # polygon areas differ slightly from mask pixel counts: keep a margin, decide exactly later
                if not Selection(None, 0, _loosen(sel.min_area_ratio, 0.9), _loosen(sel.max_area_ratio, 1.1)).area_ok(r):
                    continue
            objs.append(o)
        if objs:
            chosen.append((entry, objs))
    if sel.limit is not None:
        flat = [(i, j) for i, (_, objs) in enumerate(chosen) for j in range(len(objs))]
        if sel.limit < len(flat):
            rng = np.random.default_rng(sel.seed)
            keep = set(map(tuple, np.asarray(flat)[rng.choice(len(flat), sel.limit, replace=False)].tolist()))
            chosen = [(e, [o for j, o in enumerate(objs) if (i, j) in keep]) for i, (e, objs) in enumerate(chosen)]
            chosen = [(e, objs) for e, objs in chosen if objs]
    k, n = sel.shard
    return [c for i, c in enumerate(chosen) if i % n == k]


def _loosen(v, f):
    return None if v is None else v * f
