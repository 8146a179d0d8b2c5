"""COCO-format annotations (COCO, LVIS, ObjaScale) read with pycocotools: polygons, RLE; crowds skipped."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, read_image_file


def segmentation_to_rle(seg, height: int, width: int, what: str):
    """Any COCO segmentation (polygon list, uncompressed or compressed RLE) -> one compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6]  # < 3 points: not a polygon
        if not polys:
            raise ItemError(f"{what}: no polygon with at least 3 points")
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg, dict) and "counts" in seg:
        size = list(seg.get("size", []))
        if size != [height, width]:
            raise ItemError(f"{what}: RLE size {size} does not match the image size {[height, width]}")
        if isinstance(seg["counts"], list):
            return mask_utils.frPyObjects(seg, height, width)
        counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
        return {"size": size, "counts": counts}
    raise ItemError(f"{what}: unsupported segmentation of type {type(seg).__name__}")


class CocoDataset(Dataset):
    """Annotation file + image folder. The json is parsed once; images and masks decode on demand."""

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
        self.crowd_skipped = 0

    def _default_name(self) -> str:
        p = self.annotation_file
        return p.parent.name if p.name == "annotations.json" else p.stem

    def _guess_image_root(self) -> Path:
        for cand in (self.annotation_file.parent / "images", self.annotation_file.parent):
            if cand.is_dir():
                return cand
        return self.annotation_file.parent / "images"

    @property
    def coco(self):
        if self._coco is None:
            import contextlib
            import io

            from pycocotools.coco import COCO

            try:
                with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                    self._coco = COCO(str(self.annotation_file))
            except Exception as e:
                raise DatasetError(f"cannot read COCO annotations {self.annotation_file}: {type(e).__name__}: {e}") from None
        return self._coco

    def _build_index(self) -> list[ImageEntry]:
        coco = self.coco
        entries = []
        for img_id in sorted(coco.imgs):
            img = coco.imgs[img_id]
            objs = []
            for ann in coco.imgToAnns.get(img_id, []):
                if ann.get("iscrowd", 0):
                    self.crowd_skipped += 1
                    continue
                area = ann.get("area")
                objs.append(ObjectEntry(str(ann["id"]), float(area) if area is not None else None))
            if objs:
                entries.append(ImageEntry(str(img_id), img.get("width"), img.get("height"), tuple(objs), key=img_id))
        return entries

    def image_path(self, img: dict) -> Path:
        """COCO: file_name under the image folder (or relative to the json, as ObjaScale writes it). LVIS has no
        file_name: the coco_url's basename, directly under the folder or under its split folder (val2017/...)."""
        url = img.get("coco_url", "")
        cands = [img["file_name"]] if img.get("file_name") else []
        if url:
            cands += [os.path.basename(url), "/".join(url.rstrip("/").split("/")[-2:])]
        cands = cands or [f"{img['id']}.jpg"]
        for fname in cands:
            for base in (self.image_root, self.annotation_file.parent):
                if (base / fname).exists():
                    return base / fname
        return self.image_root / cands[0]

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        img = self.coco.imgs[entry.key]
        return read_image_file(self.image_path(img), what=f"image {entry.image_id}")

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        from pycocotools import mask as mask_utils

        img = self.coco.imgs[entry.key]
        h, w = int(img["height"]), int(img["width"])
        out = {}
        for oid in object_ids:
            what = f"object {oid} of image {entry.image_id}"
            try:
                ann = self.coco.anns[int(oid)]
                seg = ann.get("segmentation")
                if seg is None and ann.get("mask_file"):
                    out[oid] = self._mask_from_file(ann["mask_file"], h, w, what)
                    continue
                out[oid] = mask_utils.decode(segmentation_to_rle(seg, h, w, what)).astype(bool)
            except ItemError as e:
                out[oid] = e
            except Exception as e:
                out[oid] = ItemError(f"{what}: cannot decode mask ({type(e).__name__}: {e})")
        return out

    def _mask_from_file(self, rel: str, h: int, w: int, what: str) -> np.ndarray:
        from PIL import Image

        path = self.annotation_file.parent / rel
        try:
            with Image.open(path) as im:
                m = np.asarray(im.convert("L")) > 128
        except Exception as e:
            raise ItemError(f"{what}: cannot read mask {path} ({type(e).__name__}: {e})") from None
        if m.shape != (h, w):
            raise ItemError(f"{what}: mask {path} has shape {m.shape}, image is {(h, w)}")
        return m

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "annotations": str(self.annotation_file), "images": str(self.image_root)}


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
        self.metadata = {}
        for fname in self.METADATA_FILES:
            if (root / fname).is_file():
                try:
                    self.metadata = json.loads((root / fname).read_text())
                except (OSError, ValueError) as e:
                    raise DatasetError(f"ObjaScale metadata {root / fname} is not valid JSON: {e}") from None
                break

    def _build_index(self) -> list[ImageEntry]:
        entries = super()._build_index()
        if self.split in (None, "all"):
            return entries
        tag = lambda e: (self.coco.imgs[e.key].get("objascale") or {}).get("split")
        return [e for e in entries if tag(e) in (None, self.split)]  # untagged images (other generators) stay

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
