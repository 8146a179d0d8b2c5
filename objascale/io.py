"""Atomic file writes and the dataset folder layout (shared by the runner and the Blender workers)."""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np

from segcore.atomic import TMP_SUFFIX, atomic_path, atomic_write_bytes, atomic_write_json  # noqa: F401  (re-exported)


def clean_stale_tmp(root: str | Path, min_age_s: float = 0.0) -> int:
    """Remove the temp files atomic_path leaves behind when a run is killed (".NAME.XXXXXXXX.tmp" in the dataset's
    folders) and the workers' scratch folders under .tmp/, older than min_age_s. Returns how many were removed."""
    lay = Layout(root)
    now, removed = time.time(), 0
    for d in (lay.root, lay.images, lay.masks, lay.records, lay.logs):
        if not d.is_dir():
            continue
        for p in d.glob(f".*{TMP_SUFFIX}"):
            try:
                if p.is_file() and now - p.stat().st_mtime >= min_age_s:
                    p.unlink()
                    removed += 1
            except OSError:
                pass
    if lay.tmp.is_dir():
        for p in lay.tmp.iterdir():
            try:
                if now - p.stat().st_mtime >= min_age_s:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    removed += 1
            except OSError:
                pass
    return removed

def encode_image(rgb: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if fmt == "jpg":
        im.save(buf, format="JPEG", quality=quality, subsampling=0)
    else:
        im.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()

class Layout:
    """images/{i:06d}.png|jpg, masks/{i:06d}.png, records/{i:06d}.json (done) or {i:06d}.skip.json (skipped)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.images = self.root / "images"
        self.masks = self.root / "masks"
        self.records = self.root / "records"
        self.logs = self.root / "logs"
        self.tmp = self.root / ".tmp"  # the workers' scratch renders (EXR passes), removed after each attempt

    def image_path(self, i: int, ext: str) -> Path:
        return self.images / f"{i:06d}.{ext}"

    def mask_path(self, i: int) -> Path:
        return self.masks / f"{i:06d}.png"

    def record_path(self, i: int) -> Path:
        return self.records / f"{i:06d}.json"

    def skip_path(self, i: int) -> Path:
        return self.records / f"{i:06d}.skip.json"

    def status(self, i: int) -> str:
        if self.record_path(i).is_file():
            return "done"
        if self.skip_path(i).is_file():
            return "skipped"
        return "pending"
