"""The one weights hub: where every model's weight files are found, verified and (only when asked) downloaded.

Search order for a registered file: an explicit path → the cache folder ($FLIP_SUITE_CACHE, default
~/.cache/flip-suite, one sub-folder per family) → the entry's extra local places (files packaged with the
project) → a download, only with an explicit opt-in (`--download` or
FLIP_SUITE_DOWNLOAD=1) and only when the published sha256 is known, verified before the file takes its name.
Every failure names the file, the folders searched and where to get it.

The weights id says what a file is: `authors:` / `official:` only when its sha256 equals a published digest,
`project:` for the project's own checkpoints, `file:` for anything else.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

ENV_CACHE = "FLIP_SUITE_CACHE"
ENV_DOWNLOAD = "FLIP_SUITE_DOWNLOAD"
DEFAULT_CACHE = Path("~/.cache/flip-suite")
RANDOM = "random"


class WeightsError(FileNotFoundError):
    """Missing, unverifiable or unreadable weights. The message says which file and how to get it."""


@dataclass(frozen=True)
class WeightFile:
    """One published (or packaged) weights file.

    filename  name in the cache folder        sha256   published digest (None: unknown, never downloaded)
    family    cache sub-folder ("flip", "sam") url      official address (documentation or download)
    source    "authors" | "official" | "project"   local    extra places to look (callables returning a Path)
    zipped_url  some files are published only as <filename>.zip
    """

    filename: str
    family: str
    source: str
    sha256: str | None = None
    url: str | None = None
    zipped_url: str | None = None
    local: tuple[Callable[[], Path | None], ...] = field(default=(), compare=False)


def cache_dir(family: str = "") -> Path:
    root = Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser()
    return root / family if family else root


def downloads_allowed(download: bool | None = None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_DOWNLOAD, "").strip().lower() in ("1", "true", "yes")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _local(wf: WeightFile) -> Path | None:
    p = cache_dir(wf.family) / wf.filename
    if p.is_file():
        return p
    zipped = p.with_name(p.name + ".zip")
    if zipped.is_file():
        return _unzip(zipped, p)
    for find in wf.local:
        q = find()
        if q is not None and Path(q).is_file():
            return Path(q)
    return None


def find(wf: WeightFile) -> Path | None:
    """The local file for wf, or None (never downloads)."""
    return _local(wf)


def missing_message(model: str, files: Sequence[WeightFile]) -> str:
    names = ", ".join(f.filename for f in files)
    where = cache_dir(files[0].family) if files else cache_dir()
    urls = "; ".join(f"{f.filename}: {f.zipped_url or f.url}" for f in files if f.url)
    return (f"{model}: weights {names} not found. Looked in {where} (set ${ENV_CACHE} to move the cache) "
            + "".join(f"and {len(f.local)} packaged place(s) " for f in files[:1] if f.local)
            + f"and downloads are off. Get the file(s) from {urls or 'the model authors'} and put them in {where}, "
            f"pass a path, or allow a verified download with --download / {ENV_DOWNLOAD}=1.")


def resolve(model: str, files: Sequence[WeightFile], path=None, download: bool | None = None) -> list[Path]:
    """Local paths for all of `files` (or the explicit path(s)). Raises WeightsError with the way to get them."""
    if path is not None:
        paths = [Path(p).expanduser() for p in ([path] if isinstance(path, (str, os.PathLike)) else path)]
        for p in paths:
            if p.is_dir():
                raise WeightsError(f"{model}: weights path {p} is a folder; pass the weights file inside it")
            if not p.is_file():
                raise WeightsError(f"{model}: weights file {p} does not exist")
        return paths
    found = [_local(f) for f in files]
    if all(found):
        return found
    if not downloads_allowed(download):
        raise WeightsError(missing_message(model, files))
    out = []
    for f, p in zip(files, found):
        out.append(p if p is not None else fetch(model, f))
    return out


def fetch(model: str, wf: WeightFile) -> Path:
    """Download wf into the cache, verify its sha256, then give it its name (atomic)."""
    if not wf.url:
        raise WeightsError(f"{model}: {wf.filename} has no download address; get it from the model authors")
    if not wf.sha256:
        raise WeightsError(f"{model}: no published sha256 is known for {wf.filename}, so it is not downloaded "
                           f"automatically. Download it yourself from {wf.zipped_url or wf.url} into {cache_dir(wf.family)}.")
    dest = cache_dir(wf.family) / wf.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = wf.zipped_url or wf.url
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    os.close(fd)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as out:
                while block := r.read(1 << 20):
                    out.write(block)
        except Exception as e:  # any network failure becomes one clear message
            raise WeightsError(f"{model}: download of {url} failed ({type(e).__name__}: {e}); get the file there "
                               f"and put it in {dest.parent}") from None
        if wf.zipped_url:
            zipped = dest.with_name(dest.name + ".zip")
            os.replace(tmp, zipped)
            _unzip(zipped, dest)
        else:
            os.replace(tmp, dest)
        got = sha256(dest)
        if got != wf.sha256:
            bad = dest.with_name(dest.name + ".sha256-mismatch")
            os.replace(dest, bad)
            raise WeightsError(f"{model}: {url} gave sha256 {got}, expected {wf.sha256}; kept as {bad}, not used")
        return dest
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _unzip(zipped: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(zipped) as z:
            names = [n for n in z.namelist() if Path(n).name == dest.name]
            if not names:
                raise WeightsError(f"{zipped} does not contain {dest.name} (it has {z.namelist()[:5]})")
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
            with os.fdopen(fd, "wb") as f, z.open(names[0]) as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            os.replace(tmp, dest)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{zipped} is not a valid zip file ({e})") from None
    return dest


def weights_id(paths: Sequence[str | os.PathLike], published: Sequence[WeightFile] = (), project: bool = False) -> str:
    """'<source>:<names>@sha256:<12 hex>'. authors/official only when the digest equals a published one."""
    paths = [Path(p) for p in paths]
    digests = [sha256(p) for p in paths]
    known = {f.sha256: f.source for f in published if f.sha256}
    sources = {known.get(d) for d in digests}
    if project:
        label = "project"
    elif len(sources) == 1 and None not in sources:
        label = sources.pop()
    else:
        label = "file"
    return f"{label}:{'+'.join(p.name for p in paths)}@sha256:{digests[0][:12]}"
