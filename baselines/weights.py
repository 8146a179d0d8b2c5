"""Where a baseline's weights come from: an explicit path, the weights folder, or the official URL.

Order (architecture.md): explicit path → $BASELINES_WEIGHTS_DIR → ~/.cache/flip-suite/baselines → download
from the official URL into that folder. Every failure names the expected file, the folder searched and the URL.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

RANDOM = "random"
ENV_DIR = "BASELINES_WEIGHTS_DIR"
ENV_NO_DOWNLOAD = "BASELINES_NO_DOWNLOAD"  # set to 1 to never touch the network
DEFAULT_DIR = Path("~/.cache/flip-suite/baselines")


class WeightsError(RuntimeError):
    """Missing, unreadable or mismatched weights. The message says which file and how to get the right one."""


@dataclass(frozen=True)
class WeightsSpec:
    filename: str  # the official file name, looked up in the weights folder
    url: str  # official download address
    zipped_url: str | None = None  # some files are published only as <filename>.zip


def weights_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def resolve(model: str, spec: WeightsSpec, weights: str | os.PathLike | None, download: bool | None = None) -> Path:
    """Return an existing local file for `weights` (None = the default file of `spec`)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"{model}: weights file {path} does not exist (expected the official {spec.filename}, from {spec.url})"
            )
        return path
    folder = weights_dir()
    path = folder / spec.filename
    if path.is_file():
        return path
    zipped = folder / (spec.filename + ".zip")
    if zipped.is_file():
        return _unzip(model, zipped, path)
    if download is None:
        download = os.environ.get(ENV_NO_DOWNLOAD, "") in ("", "0")
    error = "downloads disabled" if not download else None
    if download:
        try:
            if spec.zipped_url:
                _download(spec.zipped_url, zipped)
                return _unzip(model, zipped, path)
            _download(spec.url, path)
            return path
        except Exception as e:  # any network or disk failure becomes one clear message
            error = f"{type(e).__name__}: {e}"
    raise WeightsError(
        f"{model}: weights {spec.filename} not found in {folder} (set ${ENV_DIR} or pass weights=<path>); "
        f"download from {spec.zipped_url or spec.url} failed ({error}). Get the file there and put it in {folder}."
    )


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)  # atomic: a half-downloaded file never carries the official name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _unzip(model: str, zipped: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(zipped) as z:
            names = [n for n in z.namelist() if Path(n).name == dest.name]
            if not names:
                raise WeightsError(f"{model}: {zipped} does not contain {dest.name} (it has {z.namelist()[:5]})")
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
            with os.fdopen(fd, "wb") as f, z.open(names[0]) as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            os.replace(tmp, dest)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{model}: {zipped} is not a valid zip file ({e})") from e
    return dest


def weights_id(path: Path) -> str:
    """File name plus the first 10 hex digits of its sha256 (the convention of the SAM release names)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return f"{Path(path).name}:{h.hexdigest()[:10]}"


def load_state_dict(model: str, path: Path, key: str | None = None) -> dict:
    """torch.load on CPU; `key` unwraps checkpoints stored as {key: state_dict}."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{model}: cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if key is not None and isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
        obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{model}: {path} holds a {type(obj).__name__}, expected a state dict")
    return obj


def check_state_dict(model: str, expected: dict, got: dict, source: str, limit: int = 8) -> None:
    """Raise WeightsError naming missing keys, unexpected keys and shape mismatches (first `limit` of each)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and hasattr(got[k], "shape") and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def fmt(label, items):
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{len(items)} {label}: {', '.join(items[:limit])}{more}" if items else ""

    parts = [p for p in (fmt("missing keys", missing), fmt("unexpected keys", unexpected), fmt("shape mismatches", shapes)) if p]
    raise WeightsError(f"{model}: {source} does not match the {model} architecture; " + "; ".join(parts))
