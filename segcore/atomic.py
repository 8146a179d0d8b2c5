"""Atomic file writes: the one helper every part of the suite writes its outputs through.

A write goes to a uniquely named temporary file in the target's folder (so two concurrent writers never share
one), is flushed to disk, then takes its final name with os.replace. A failed or interrupted write removes its
temporary file; a kill -9 may leave one (`.NAME.XXXXXXXX.tmp`), which `stale_tmp_files` finds.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path next to `path`; on success it replaces `path`, on any error it is removed.

    For writers that open the path themselves (h5py, matplotlib, PIL). Created like open(): mode 0666 minus the
    umask (mkstemp would give 0600 and make shared outputs private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 1, sort_keys: bool = True) -> None:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default)
    atomic_write_text(path, text)


class PartFileWriter:
    """Buffers rows and writes each flush as a new part file FOLDER/part-TAG-NNNNNN.csv (atomic, never appended to),
    every `flush_every` rows or, when set, every `flush_seconds` seconds. Subclasses say how rows are written
    (`write_part`); concurrent shards never share a file, since the tag carries the process id and start time."""

    def __init__(self, folder, tag: str = "0", flush_every: int = 200, flush_seconds: float | None = None):
        self.dir = Path(folder)
        self.tag = f"{tag}-{os.getpid()}-{int(time.time() * 1000)}"
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.buffer: list = []
        self.parts = 0
        self.written = 0
        self._last = time.monotonic()

    def write_part(self, path: Path, rows: list) -> None:
        raise NotImplementedError

    def _maybe_flush(self) -> None:
        late = self.flush_seconds is not None and time.monotonic() - self._last > self.flush_seconds
        if len(self.buffer) >= self.flush_every or late:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.buffer:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_part(self.dir / f"part-{self.tag}-{self.parts:06d}.csv", self.buffer)
        self.written += len(self.buffer)
        self.parts += 1
        self.buffer = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()


def stale_tmp_files(folder: str | os.PathLike, min_age_s: float = 0.0) -> list[Path]:
    """Temp files atomic_path left in `folder` (not recursive) that are at least min_age_s old."""
    folder, now, out = Path(folder), time.time(), []
    if not folder.is_dir():
        return out
    for p in folder.glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if p.is_file() and now - p.stat().st_mtime >= min_age_s:
                out.append(p)
    return out
