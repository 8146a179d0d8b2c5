"""COCO-format annotations (COCO, LVIS, ObjaScale): polygons and RLE through pycocotools; crowds skipped.

The json is validated when the dataset is opened (a configuration error names what is wrong): it must hold
`images` and `annotations` lists, and image ids and annotation ids must be unique (pycocotools silently keeps
the last of two equal ids, which scores the wrong mask or image). Everything about one object or one image
(absurd polygon coordinates, a missing file, a missing size) fails only that object or image.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..image import image_file_size
from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, areas_from_rles, masks_from_rles, read_image_file

MAX_PIXELS = 1 << 28  # a stated size above this is not trusted: the file's own header decides


def _rle_string_total(counts: bytes) -> int:
    """Sum of the run lengths of a compressed COCO RLE string (pycocotools' rleFrString format: 5-bit groups,
    runs after the second stored as deltas to the run two back), to check it covers exactly H·W pixels."""
    runs, i, n = [], 0, len(counts)
    while i < n:
        x, shift, more = 0, 0, True
        while more:
            if i >= n:
                raise ValueError("truncated RLE string")
            c = counts[i] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(counts[i])!r} outside the RLE alphabet")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            i += 1
            shift += 5
            if not more and (c & 0x10):
                x |= -1 << shift
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("negative run length")
        runs.append(x)
    return sum(runs)


def _check_polygon(poly, height: int, width: int, what: str) -> list[float]:
    """Finite numbers near the image. pycocotools rasterises on a 5× grid along each edge, so one coordinate of
    1e8 (or NaN, which becomes a huge integer) allocates tens of GB and kills the process."""
    if not isinstance(poly, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
        raise ItemError(f"{what}: polygon is not a list of numbers")
    if len(poly) % 2:
        raise ItemError(f"{what}: polygon has an odd number of coordinates ({len(poly)})")
    arr = np.asarray(poly, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ItemError(f"{what}: polygon has a non-finite coordinate (NaN or inf)")
    margin = max(width, height)  # generous: real files stray a few pixels outside; more than one image size is broken
    xs, ys = arr[0::2], arr[1::2]
    if xs.min() < -margin or xs.max() > width + margin or ys.min() < -margin or ys.max() > height + margin:
        raise ItemError(f"{what}: polygon coordinates x∈[{xs.min():.6g}, {xs.max():.6g}], y∈[{ys.min():.6g}, {ys.max():.6g}] "
                        f"lie far outside the {width}×{height} image")
    return [float(v) for v in arr]


def segmentation_to_rle(seg, height: int, width: int, what: str):
    """Any COCO segmentation (polygon list, uncompressed or compressed RLE) -> one compressed RLE, validated."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [_check_polygon(p, height, width, what) for p in seg]
        polys = [p for p in polys if len(p) >= 6]  # < 3 points: not a polygon
        if not polys:
            raise ItemError(f"{what}: no polygon with at least 3 points")
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg, dict) and "counts" in seg:
        size = list(seg.get("size", []))
        if size != [height, width]:
            raise ItemError(f"{what}: RLE size {size} does not match the image size {[height, width]}")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise ItemError(f"{what}: RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise ItemError(f"{what}: RLE covers {sum(counts)} pixels, the image has {height * width}")
            return mask_utils.frPyObjects(seg, height, width)
        if not isinstance(counts, (str, bytes)):
            raise ItemError(f"{what}: RLE counts of type {type(counts).__name__}")
        counts = counts.encode("ascii") if isinstance(counts, str) else counts
        try:
            total = _rle_string_total(counts)
        except (ValueError, UnicodeEncodeError) as e:
            raise ItemError(f"{what}: invalid compressed RLE ({e})") from None
        if total != height * width:
            raise ItemError(f"{what}: RLE covers {total} pixels, the image has {height * width}")
        return {"size": size, "counts": counts}
    raise ItemError(f"{what}: unsupported segmentation of type {type(seg).__name__}")


def _duplicates(ids) -> list:
    return [k for k, n in Counter(ids).items() if n > 1]


def _plain_size(v) -> int | None:
    """A stated width or height: a positive integer (integral floats accepted), else None (= unknown)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) or v < 1:
        return None
    return int(v)


class CocoDataset(Dataset):
    """Annotation file + image folder. The json is parsed and validated once; images and masks decode on demand."""

    kind = "coco"

    def __init__(self, annotation_file, image_root=None, name: str | None = None):
        super().__init__()
        self.annotation_file = Path(annotation_file)
        if not self.annotation_file.is_file():
            raise DatasetError(f"COCO annotation file not found: {self.annotation_file}")
        self.image_root = Path(image_root) if image_root else self._guess_image_root()
        if not self.image_root.is_dir():
            raise DatasetError(f"image folder not found: {self.image_root} (pass it explicitly for {self.annotation_file})")
        self.name = name or self._default_name()
        self._coco = None
        self._load()

    def _default_name(self) -> str:
        p = self.annotation_file
        return p.parent.name if p.name == "annotations.json" else p.stem

    def _guess_image_root(self) -> Path:
        for cand in (self.annotation_file.parent / "images", self.annotation_file.parent):
            if cand.is_dir():
                return cand
        return self.annotation_file.parent / "images"

    # ---------------------------------------------------------------- opening: everything a config error
    def _load(self) -> None:
        path = self.annotation_file
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as e:  # ValueError covers JSON and UTF-8 errors
            raise DatasetError(f"cannot read COCO annotations {path}: {type(e).__name__}: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
            found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
            raise DatasetError(f"{path} is not a COCO-format file: expected a json object with 'images' and "
                               f"'annotations' lists (found {found})")
        for kind, items, keys in (("image", data["images"], ("id",)), ("annotation", data["annotations"], ("id", "image_id"))):
            for k, it in enumerate(items):
                if not isinstance(it, dict) or any(not isinstance(it.get(f), (int, str)) or isinstance(it.get(f), bool) for f in keys):
                    raise DatasetError(f"{path}: {kind} #{k} lacks an integer or string {' / '.join(keys)}: {str(it)[:120]}")
        img_ids = [str(im["id"]) for im in data["images"]]
        ann_ids = [str(a["id"]) for a in data["annotations"]]
        for kind, ids in (("image", img_ids), ("annotation", ann_ids)):
            dup = _duplicates(ids)
            if dup:
                raise DatasetError(f"{path}: {len(dup)} duplicated {kind} id(s) {dup[:10]}{' ...' if len(dup) > 10 else ''}; "
                                   f"ids must be unique (otherwise one {kind} silently replaces another)")
        self.data = data
        self.imgs = {str(im["id"]): im for im in data["images"]}
        self.anns = {str(a["id"]): a for a in data["annotations"]}
        self.img_to_anns: dict[str, list] = {}
        for a in data["annotations"]:
            self.img_to_anns.setdefault(str(a["image_id"]), []).append(a)

    @property
    def coco(self):
        """A pycocotools COCO over the validated json (for callers that want its API)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            import contextlib
            import io

            c = COCO()
            c.dataset = self.data
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                c.createIndex()
            self._coco = c
        return self._coco

    def num_annotations(self) -> int:
        return len(self.data["annotations"])

    def _build_index(self) -> list[ImageEntry]:
        skipped = Counter()
        entries = []
        for sid, img in sorted(self.imgs.items(), key=lambda kv: _sort_key(kv[1]["id"])):
            objs = []
            for ann in self.img_to_anns.get(sid, []):
                if ann.get("iscrowd", 0):
                    skipped["crowd_skipped"] += 1
                    continue
                objs.append(ObjectEntry(str(ann["id"])))  # the json `area` is not trusted: areas come from the masks
            if objs:
                entries.append(ImageEntry(sid, _plain_size(img.get("width")), _plain_size(img.get("height")), tuple(objs), key=sid))
        orphans = sum(len(v) for k, v in self.img_to_anns.items() if k not in self.imgs)
        if orphans:
            skipped["image_not_in_file"] = orphans
        self.skipped = dict(skipped)
        return entries

    @property
    def crowd_skipped(self) -> int:
        self.index()
        return self.skipped.get("crowd_skipped", 0)

    # ---------------------------------------------------------------- per image / object: ItemError
    def image_candidates(self, img: dict) -> list[Path]:
        """COCO: file_name under the image folder (or relative to the json, as ObjaScale writes it). LVIS has no
        file_name: the coco_url's basename, directly under the folder or under its split folder (val2017/...)."""
        url = img.get("coco_url", "") if isinstance(img.get("coco_url"), str) else ""
        names = [img["file_name"]] if isinstance(img.get("file_name"), str) and img["file_name"] else []
        if url:
            names += [os.path.basename(url.rstrip("/")), "/".join(url.rstrip("/").split("/")[-2:])]
        names = names or [f"{img['id']}.jpg"]
        return list(dict.fromkeys(base / n for n in names for base in (self.image_root, self.annotation_file.parent)))

    def image_path(self, img: dict) -> Path:
        """The first candidate that exists; ItemError naming every path tried when none does."""
        cands = self.image_candidates(img)
        for p in cands:
            if p.is_file():
                return p
        src = f" (coco_url {img['coco_url']})" if img.get("coco_url") else ""
        raise ItemError(f"image {img['id']}: file not found{src}; tried " + ", ".join(map(str, cands)))

    def image_size(self, entry: ImageEntry) -> tuple[int, int]:
        """(height, width) from the image file's header (no pixel decoded). A json that states another size is an
        error of this image, raised before any mask is decoded at that size (16000×16000 stated for a small
        image would make every mask 256 MB). Without the file, the json's size when stated and plausible."""
        img = self.imgs[entry.key]
        try:
            path = self.image_path(img)
        except ItemError:
            if entry.width and entry.height and entry.width * entry.height <= MAX_PIXELS:
                return entry.height, entry.width  # the image itself fails when loaded
            raise
        w, h = image_file_size(path)
        if entry.width and entry.height and (entry.width, entry.height) != (w, h):
            raise ItemError(f"image {entry.image_id}: the json states {entry.width}×{entry.height} pixels, the file "
                            f"{path.name} is {w}×{h}")
        return h, w

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        img = self.imgs[entry.key]
        return read_image_file(self.image_path(img), what=f"image {entry.image_id}")

    def _rles(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        """{id: compressed RLE | bool mask (mask files) | ItemError}."""
        try:
            h, w = self.image_size(entry)
        except ItemError as e:
            return {oid: ItemError(f"object {oid} of image {entry.image_id}: {e}") for oid in object_ids}
        out = {}
        for oid in object_ids:
            what = f"object {oid} of image {entry.image_id}"
            try:
                ann = self.anns[oid]
                seg = ann.get("segmentation")
                if seg is None and ann.get("mask_file"):
                    out[oid] = self._mask_from_file(ann["mask_file"], h, w, what)
                else:
                    out[oid] = segmentation_to_rle(seg, h, w, what)
            except ItemError as e:
                out[oid] = e
            except Exception as e:
                out[oid] = ItemError(f"{what}: cannot decode mask ({type(e).__name__}: {e})")
        return out

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        return masks_from_rles(self._rles(entry, object_ids), entry.image_id)

    def mask_areas(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        """Exact pixel counts from the RLE (the same number the decoded mask gives), without decoding."""
        return areas_from_rles(self._rles(entry, object_ids))

    def _mask_from_file(self, rel: str, h: int, w: int, what: str) -> np.ndarray:
        from PIL import Image

        from ..hdf5 import mask_to_bool

        path = self.annotation_file.parent / rel
        try:
            with Image.open(path) as im:
                if (im.size[1], im.size[0]) != (h, w):  # from the header, before decoding any pixel
                    raise ItemError(f"{what}: mask {path} has shape {(im.size[1], im.size[0])}, image is {(h, w)}")
                arr = np.asarray(im)  # the stored values (0/1 or 0/255, 8 or 16 bits), not a clipped "L" copy
        except ItemError:
            raise
        except Exception as e:
            raise ItemError(f"{what}: cannot read mask {path} ({type(e).__name__}: {e})") from None
        return mask_to_bool(arr[..., 0] if arr.ndim == 3 else arr)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "annotations": str(self.annotation_file), "images": str(self.image_root)}


def _sort_key(i):
    return (0, i, "") if isinstance(i, int) else (1, 0, str(i))


class ObjaScaleDataset(CocoDataset):
    """An ObjaScale folder: COCO annotations.json + images/ (+ masks/), plus the generator's metadata file."""

    kind = "objascale"
    METADATA_FILES = ("metadata.json", "config.json", "dataset.json", "info.json")  # config.json: the generator's settings

    def __init__(self, root, name: str | None = None, split: str | None = "eval"):
        root = Path(root)
        default = root.name if split in ("eval", None) else f"{root.name}-{split}"  # two splits never share a name
        super().__init__(root / "annotations.json", root / "images", name=name or default)
        self.root = root
        self.split = split  # images tagged with another split are left out; None or "all" keeps everything
        tags = {self._tag(im) for im in self.imgs.values()} - {None}
        if split not in (None, "all", "eval") and split not in tags:
            known = ", ".join(sorted(map(str, tags))) or "none (no image carries a split tag)"
            raise DatasetError(f"{root}: no image of split {split!r}; splits in this folder: {known} (or #all)")
        self.metadata = {}
        for fname in self.METADATA_FILES:
            if (root / fname).is_file():
                try:
                    self.metadata = json.loads((root / fname).read_text())
                except (OSError, ValueError) as e:
                    raise DatasetError(f"ObjaScale metadata {root / fname} is not valid JSON: {e}") from None
                break

    @staticmethod
    def _tag(img: dict):
        o = img.get("objascale")
        return o.get("split") if isinstance(o, dict) else None

    def _build_index(self) -> list[ImageEntry]:
        entries = super()._build_index()
        if self.split in (None, "all"):
            return entries
        keep = [e for e in entries if self._tag(self.imgs[e.key]) in (None, self.split)]  # untagged images (other generators) stay
        other = sum(len(e.objects) for e in entries) - sum(len(e.objects) for e in keep)
        if other:
            self.skipped["other_split"] = other
        return keep

    def describe(self) -> dict:
        d = super().describe()
        d["root"] = str(self.root)
        d["split"] = self.split
        # a few scalar fields only: the report embeds this
        md = self.metadata if isinstance(self.metadata, dict) else {}
        flat = dict(md.get("config", {})) if isinstance(md.get("config"), dict) else {}
        flat.update(md)
        d["metadata"] = {k: v for k, v in flat.items() if isinstance(v, (str, int, float, bool))}
        return d
