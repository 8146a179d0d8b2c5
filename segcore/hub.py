"""The one weights hub: where every model's weight files are found, verified and (only when asked) downloaded.

Search order for a registered file: an explicit path → the cache folder ($FLIP_SUITE_CACHE, default
~/.cache/flip-suite, one sub-folder per family) → the entry's extra local places (a file packaged with the
project) → a download, only with an explicit opt-in (`download=True`: `--download`, `DOWNLOAD=1`,
`make weights`, or FLIP_SUITE_DOWNLOAD=1). Every failure names the file, the folders searched and how to get it.

Verification: a file with a published sha256 is checked against it. A file without one is trusted on first use:
its sha256, size, URL and date go into the cache's lock file (weights.lock.json, atomic write under a file lock)
and every later use of that cache file is checked against the lock; a changed file is refused with the way to
accept it (`python -m benchmark.weights --accept FILE`). A download goes to a temp file in the target's folder,
is checked (length, digest), and only then takes its name; a silent server is a timeout ($FLIP_SUITE_TIMEOUT).

The weights id says what a file is: `authors:` / `official:` only when its sha256 equals a published digest,
`url:` for a file trusted on first use from its URL, `project:` for the project's own checkpoints, `file:` else.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

ENV_CACHE = "FLIP_SUITE_CACHE"
ENV_DOWNLOAD = "FLIP_SUITE_DOWNLOAD"
ENV_TIMEOUT = "FLIP_SUITE_TIMEOUT"
DEFAULT_CACHE = Path("~/.cache/flip-suite")
DEFAULT_TIMEOUT = 60.0  # seconds without a byte from the server (connect or read)
LOCK_NAME = "weights.lock.json"
RANDOM = "random"


class WeightsError(FileNotFoundError):
    """Missing, unverifiable or unreadable weights. The message says which file and how to get it."""


@dataclass(frozen=True)
class WeightFile:
    """One published (or packaged) weights file.

    filename  name in the cache folder        sha256   published digest (None: trusted on first use)
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

    @property
    def key(self) -> str:
        """Its name in the lock file and for --accept: '<family>/<filename>'."""
        return f"{self.family}/{self.filename}"

    @property
    def download_url(self) -> str | None:
        return self.zipped_url or self.url


def cache_dir(family: str = "") -> Path:
    root = Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser()
    return root / family if family else root


def lock_path() -> Path:
    return cache_dir() / LOCK_NAME


def downloads_allowed(download: bool | None = None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_DOWNLOAD, "").strip().lower() in ("1", "true", "yes")


def default_timeout() -> float:
    try:
        return float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT)
    except ValueError:
        raise WeightsError(f"${ENV_TIMEOUT}={os.environ[ENV_TIMEOUT]!r} is not a number of seconds") from None


# (path, inode, size, mtime_ns, ctime_ns) -> sha256: a big file is hashed once per process; ctime moves with any
# write, even one that keeps the length and resets the mtime
_DIGESTS: dict[tuple, str] = {}


def sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    memo = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


# ---------------------------------------------------------------------------------------------- the lock file
def _file_lock():
    from filelock import FileLock

    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / ".locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(cache_dir() / ".locks" / (LOCK_NAME + ".lock")), timeout=120)


def read_lock() -> dict[str, dict]:
    p = lock_path()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"the weights lock file {p} is unreadable ({e}); repair or delete it "
                           "(every cache file without a published sha256 is then trusted again on its next use)") from None
    return dict(data.get("files", {})) if isinstance(data, dict) else {}


def _update_lock(key: str, entry: dict | None) -> None:
    """Set (or with None, remove) one entry; read-modify-write under the file lock, written atomically."""
    from .atomic import atomic_write_json

    with _file_lock():
        files = read_lock()
        if entry is None:
            files.pop(key, None)
        else:
            files[key] = entry
        atomic_write_json(lock_path(), {"about": "sha256 of weights files without a published digest, trusted on "
                                        "first use (segcore/hub.py); python -m benchmark.weights --accept FILE "
                                        "re-trusts a changed file", "files": files})


def _lock_entry(path: Path, url: str | None) -> dict:
    return {"sha256": sha256(path), "size": path.stat().st_size, "url": url,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def accept(key: str) -> dict:
    """Trust the file now in the cache under `key` ('family/filename' or a path inside the cache): re-lock it."""
    p = Path(key).expanduser()
    if p.is_absolute():
        try:
            key = p.resolve().relative_to(cache_dir().resolve()).as_posix()
        except ValueError:
            raise WeightsError(f"{p} is not inside the cache {cache_dir()}; only cache files are locked") from None
    path = cache_dir() / key
    if not path.is_file():
        raise WeightsError(f"{path} does not exist; nothing to accept")
    old = read_lock().get(key, {})
    entry = _lock_entry(path, old.get("url"))
    _update_lock(key, entry)
    return entry


def forget(key: str) -> bool:
    """Remove a lock entry (the file is trusted again on its next use). True when there was one."""
    had = key in read_lock()
    if had:
        _update_lock(key, None)
    return had


def _refusal(wf: WeightFile, path: Path, got: str, want: str, why: str) -> str:
    return (f"{wf.filename}: {path} {why} (sha256 {got[:16]}…, expected {want[:16]}…); not used. "
            f"If the new file is intended: python -m benchmark.weights --accept {wf.key} (or delete its entry in "
            f"{lock_path()}); to get the locked file again, delete {path} and run make weights.")


def verify(wf: WeightFile, path: Path) -> Path:
    """Check a cache file against its published digest, else against (or, the first time, into) the lock."""
    got = sha256(path)
    if wf.sha256:
        if got != wf.sha256:
            raise WeightsError(f"{wf.filename}: {path} does not match its published sha256 (got {got[:16]}…, "
                               f"published {wf.sha256[:16]}…); not used. Delete it and run make weights (or "
                               f"--download) to fetch the published file from {wf.download_url}.")
        return path
    entry = read_lock().get(wf.key)
    if entry is None:  # a file put there by hand before any download: trusted on first use as well
        _update_lock(wf.key, _lock_entry(path, None))
    elif entry.get("sha256") != got:
        raise WeightsError(_refusal(wf, path, got, str(entry.get("sha256")), f"changed since it was locked on {entry.get('date')}"))
    return path


# ---------------------------------------------------------------------------------------------- finding
def _cached(wf: WeightFile) -> Path | None:
    p = cache_dir(wf.family) / wf.filename
    if p.is_file():
        return p
    zipped = p.with_name(p.name + ".zip")
    if zipped.is_file():
        return _unzip(zipped, p)
    return None


def _packaged(wf: WeightFile) -> Path | None:
    for find_ in wf.local:
        q = find_()
        if q is not None and Path(q).is_file():
            return Path(q)
    return None


def find(wf: WeightFile) -> Path | None:
    """The local file for wf, or None (never downloads, never verifies: `resolve` does)."""
    return _cached(wf) or _packaged(wf)


def status(wf: WeightFile) -> tuple[Path | None, str]:
    """(local path or None, sha256 status) for listings: published ok/MISMATCH, locked ok/CHANGED, unlocked."""
    cached = _cached(wf)
    if cached is None:
        p = _packaged(wf)
        return (p, "packaged with the project") if p else (None, "missing")
    got = sha256(cached)
    if wf.sha256:
        return cached, "published sha256 ok" if got == wf.sha256 else "MISMATCH with the published sha256"
    entry = read_lock().get(wf.key)
    if entry is None:
        return cached, "not locked yet (trusted on first use)"
    return cached, (f"locked {entry.get('date')} ok" if entry.get("sha256") == got
                    else f"CHANGED since locked {entry.get('date')} (--accept {wf.key})")


def make_hint(model: str) -> str:
    return f"make weights MODEL={model}"


def missing_message(model: str, files: Sequence[WeightFile]) -> str:
    names = ", ".join(f.filename for f in files)
    where = cache_dir(files[0].family) if files else cache_dir()
    urls = "; ".join(f"{f.filename}: {f.download_url}" for f in files if f.url)
    base = model.split(".")[0]
    how = (f"Fetch them with `{make_hint(base)}` (python -m benchmark.weights {base}), or allow the download "
           f"in the run with --download / DOWNLOAD=1 / {ENV_DOWNLOAD}=1; or get them from {urls} and put them in "
           f"{where}, or pass a path." if urls else
           f"No download address is known: get them from the model authors and put them in {where}, or pass a path.")
    return (f"{model}: weights {names} not found. Looked in {where} (set ${ENV_CACHE} to move the cache) "
            + "".join(f"and {len(f.local)} packaged place(s) " for f in files[:1] if f.local)
            + f"and downloads are off. {how}")


def resolve(model: str, files: Sequence[WeightFile], path=None, download: bool | None = None,
            timeout: float | None = None, progress: bool = True) -> list[Path]:
    """Local, verified paths for all of `files` (or the explicit path(s)). Raises WeightsError with the way to
    get them. Explicit paths are the caller's choice and are not checked against the lock."""
    if path is not None:
        paths = [Path(p).expanduser() for p in ([path] if isinstance(path, (str, os.PathLike)) else path)]
        for p in paths:
            if p.is_dir():
                raise WeightsError(f"{model}: weights path {p} is a folder; pass the weights file inside it")
            if not p.is_file():
                raise WeightsError(f"{model}: weights file {p} does not exist")
        return paths
    found = [_cached(f) for f in files]
    found = [verify(f, p) if p is not None else _packaged(f) for f, p in zip(files, found)]
    if all(found):
        return found
    if not downloads_allowed(download):
        raise WeightsError(missing_message(model, files))
    return [p if p is not None else fetch(model, f, timeout=timeout, progress=progress) for f, p in zip(files, found)]


def resolve_any(model: str, sets: Sequence[Sequence[WeightFile]], download: bool | None = None,
                timeout: float | None = None, progress: bool = True) -> list[Path]:
    """The first file set that is all on this machine (verified), else the first set (fetched when allowed)."""
    if not sets:
        raise WeightsError(f"{model}: no weights files are registered")
    for files in sets:
        if all(find(f) for f in files):
            return resolve(model, files)
    return resolve(model, sets[0], download=download, timeout=timeout, progress=progress)


# ---------------------------------------------------------------------------------------------- downloading
def _download(url: str, out: Path, timeout: float, desc: str, progress: bool) -> int:
    """Stream url into out with a progress bar; returns the byte count. Fewer bytes than Content-Length: error."""
    import urllib.request

    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "flip-suite-weights/1"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(out, "wb") as f:
        length = r.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        n = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
                  mininterval=0.5, leave=True) as bar:
            while block := r.read(1 << 20):
                f.write(block)
                n += len(block)
                bar.update(len(block))
        if total is not None and n != total:
            raise OSError(f"truncated transfer: got {n} of {total} bytes")
        f.flush()
        os.fsync(f.fileno())
    return n


def fetch(model: str, wf: WeightFile, timeout: float | None = None, progress: bool = True) -> Path:
    """Download wf into the cache: temp file in the same folder, length and digest checked, then os.replace.
    Without a published digest the file is trusted on first use and locked."""
    from filelock import FileLock

    from .atomic import atomic_path

    url = wf.download_url
    if not url:
        raise WeightsError(f"{model}: {wf.filename} has no download address; get it from the model authors "
                           f"and put it in {cache_dir(wf.family)}")
    dest = cache_dir(wf.family) / wf.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    timeout = default_timeout() if timeout is None else float(timeout)
    locks = cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{wf.family}--{wf.filename}.lock")):  # one downloader per file; others wait, then reuse
        if dest.is_file():
            return verify(wf, dest)
        with atomic_path(dest) as tmp:  # nothing partial or unverified ever takes the final name
            try:
                _download(url, tmp, timeout, wf.filename, progress)
            except Exception as e:  # any network failure becomes one clear message (the temp file goes)
                raise WeightsError(f"{model}: download of {url} failed ({type(e).__name__}: {e}); get the file "
                                   f"there and put it in {dest.parent}") from None
            if wf.zipped_url:
                _unzip(tmp, dest, into=tmp)
            got = sha256(tmp)
            if wf.sha256 and got != wf.sha256:
                raise WeightsError(f"{model}: {url} gave sha256 {got}, expected {wf.sha256}; discarded, not used")
            prev = None if wf.sha256 else read_lock().get(wf.key)
            if prev is not None and prev.get("sha256") != got:  # the address now serves other bytes than were locked
                raise WeightsError(_refusal(wf, dest, got, str(prev.get("sha256")),
                                            f"as downloaded again from {url} differs from the file locked on {prev.get('date')}"))
        if not wf.sha256 and prev is None:
            _update_lock(wf.key, _lock_entry(dest, url))
        return dest


def _unzip(zipped: Path, dest: Path, into: Path | None = None) -> Path:
    """Extract the member named dest.name from zipped into dest (or, with `into`, over that temp file)."""
    from .atomic import atomic_path

    target = into or dest
    try:
        with zipfile.ZipFile(zipped) as z:
            names = [n for n in z.namelist() if Path(n).name == dest.name]
            if not names:
                raise WeightsError(f"{zipped} does not contain {dest.name} (it has {z.namelist()[:5]})")
            with atomic_path(target) as tmp, open(tmp, "wb") as f, z.open(names[0]) as src:
                shutil.copyfileobj(src, f, 1 << 20)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{zipped} ({dest.name}) is not a valid zip file ({e})") from None
    return target


# ---------------------------------------------------------------------------------------------- labels
def weights_id(paths: Sequence[str | os.PathLike], published: Sequence[WeightFile] = (), project: bool = False) -> str:
    """'<source>:<names>@sha256:<12 hex>'. authors/official only when the digest equals a published one;
    url: when every file is a locked download (trusted on first use)."""
    paths = [Path(p) for p in paths]
    digests = [sha256(p) for p in paths]
    known = {f.sha256: f.source for f in published if f.sha256}
    sources = {known.get(d) for d in digests}
    locked = {e.get("sha256") for e in read_lock().values() if e.get("url")} if not project else set()
    if project:
        label = "project"
    elif len(sources) == 1 and None not in sources:
        label = sources.pop()
    elif all(d in locked or d in known for d in digests):
        label = "url"
    else:
        label = "file"
    return f"{label}:{'+'.join(p.name for p in paths)}@sha256:{digests[0][:12]}"
