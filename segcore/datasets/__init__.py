r"""Dataset adapters behind one lazy interface, plus selection (limit, area range, shard).

A data spec names one dataset:

    [NAME=]PATH[#SPLIT][::IMAGE_DIR]

  DIR with annotations.json         ObjaScale folder (COCO json + images/ + metadata); its eval split unless
                                    DIR#train, DIR#all or another split its images carry
  FILE.json[::IMAGE_DIR]            any COCO-format file (COCO, LVIS) with its image folder
  FILE.h5 / FILE.hdf5               the FLIP HDF5 layout
  DIR of .tar shards / sa_*.json    SA-1B: .tar shards read in place, or extracted sa_<id>.jpg/.json pairs
  FILE.tar                          one SA-1B shard (e.g. a held-out shard: --data sa1b=/data/sa1b/sa_000999.tar)
  NAME=<any of the above>           the same, shown as NAME in tables

Several specs in one string are separated by commas (`python -m benchmark --data A,B`).

Which characters mean something, and how to escape them:
  NAME=    only when NAME is a bare word (letters, digits, _ . + -): `/data/a=b/val.json` needs no escape,
           `a=b.json` (a file in the current folder) is NAME a, PATH b.json unless written `a\=b.json`
  #SPLIT   only when SPLIT is a bare word (letters, digits, _ -) at the end of PATH, and only for ObjaScale
           folders: `/data/run#3/val.json` needs no escape, the folder `/data/run#3` must be written `/data/run\#3`
  ::       the first `::` starts IMAGE_DIR; everything after it is the folder (`=` and `#` included)
  ,        always separates specs: a comma inside a path is written `\,`
A backslash before one of  = # , : \  makes that character literal (`\:\:` for a literal `::`, `\\` for a
backslash); before any other character it is kept as it is. The meaning of a spec never depends on which files
exist. In a shell, quote the spec: --data 'coco=/data/x\,y/val.json::/data/imgs'. `escape_spec(path)` builds a
spec for any path.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import re
import time

import numpy as np

from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, Sample
from ..atomic import atomic_write_text
from .coco import CocoDataset, ObjaScaleDataset, segmentation_to_rle
from ..hdf5 import write_flip_hdf5
from ..hub import sha256
from .hdf5 import FlipHdf5Dataset
from .sa1b import Sa1bDataset, Sa1bSource, looks_like_sa1b

__all__ = [
    "prompts_of",
    "Dataset", "DatasetError", "ImageEntry", "ItemError", "ObjectEntry", "Sample", "CocoDataset", "ObjaScaleDataset",
    "FlipHdf5Dataset", "Sa1bDataset", "Sa1bSource", "open_dataset", "parse_spec", "split_specs", "escape_spec", "Selection", "select",
    "select_counted", "segmentation_to_rle", "write_flip_hdf5", "dataset_fingerprint",
]

SPECIAL = "=#,:\\"
_BARE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_BARE_SPLIT = re.compile(r"[A-Za-z0-9_-]+")


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(character, escaped) pairs: a backslash escapes the next character when it is one of SPECIAL."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in SPECIAL:
            out.append((text[i + 1], True))
            i += 2
        else:
            out.append((c, False))
            i += 1
    return out


def _text(tokens) -> str:
    return "".join(c for c, _ in tokens)


def _raw(tokens) -> str:
    """Back to spec text with the escapes kept."""
    return "".join(("\\" + c) if esc else c for c, esc in tokens)


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs on unescaped commas; each part keeps its escapes for parse_spec."""
    parts, cur = [], []
    for c, esc in _tokens(str(text)):
        if c == "," and not esc:
            parts.append(_raw(cur))
            cur = []
        else:
            cur.append((c, esc))
    parts.append(_raw(cur))
    return [p.strip() for p in parts if p.strip()]


def escape_spec(path) -> str:
    """A spec (or IMAGE_DIR) text that means exactly this path."""
    return "".join("\\" + c if c in SPECIAL else c for c in str(path))


def parse_spec(spec: str) -> tuple[str | None, Path, str | None, str | None]:
    """[NAME=]PATH[#SPLIT][::IMAGE_DIR] → (name, path, split or None, image_root or None); see the module doc."""
    toks = _tokens(str(spec))
    image_root = None
    for i in range(len(toks) - 1):
        if toks[i] == (":", False) and toks[i + 1] == (":", False):
            toks, image_root = toks[:i], _text(toks[i + 2:])
            break
    name = None
    eq = next((i for i, t in enumerate(toks) if t == ("=", False)), None)
    if eq is not None and _BARE_NAME.fullmatch(_text(toks[:eq])):
        name, toks = _text(toks[:eq]), toks[eq + 1:]
    split = None
    hashes = [i for i, t in enumerate(toks) if t == ("#", False)]
    if hashes and _BARE_SPLIT.fullmatch(_text(toks[hashes[-1] + 1:])):
        toks, split = toks[:hashes[-1]], _text(toks[hashes[-1] + 1:])
    path = _text(toks)
    if not path:
        raise DatasetError(f"data spec {spec!r} names no path")
    return name, Path(path), split, image_root


DATA_SUFFIXES = {".png", ".jpg", ".jpeg", ".json", ".hdf5", ".h5", ".webp", ".bmp", ".tif", ".tiff", ".tar"}
RACY_SECONDS = 2.0  # a digest of a file modified this recently is not cached (an edit in the same tick is invisible)


def _digest_cache_path() -> Path:
    from ..hub import cache_dir

    return cache_dir("fingerprints") / "file-digests.json"


def _file_digest(f: Path, cache: dict) -> str:
    """sha256 of a file's bytes, streamed; reused from `cache` while size, mtime, ctime and inode are unchanged."""
    st = f.stat()
    key = str(f.resolve())
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    hit = cache.get(key)
    if isinstance(hit, list) and hit[:4] == stamp and len(hit) == 5:
        return hit[4]
    digest = sha256(f)
    if time.time() - st.st_mtime > RACY_SECONDS:  # ctime in the key catches a later edit that restores mtime
        cache[key] = stamp + [digest]
        cache["_dirty"] = True
    return digest


def _load_cache() -> dict:
    try:
        c = json.loads(_digest_cache_path().read_text())
        return c if isinstance(c, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    if not cache.pop("_dirty", False):
        return
    path = _digest_cache_path()
    try:
        keep = {k: v for k, v in cache.items() if os.path.exists(k)}  # forget files that are gone
        atomic_write_text(path, json.dumps(keep))
    except OSError:  # a cache that cannot be written only costs time
        pass


def dataset_fingerprint(spec: str) -> str:
    """Content identity of a dataset spec: the sha256 of every image, mask and annotation file, with its name.

    Part of the benchmark's default run name and checked on resume, so records are never reused for a
    re-rendered or edited dataset (an edit that keeps the file's length included). Files are hashed streamed;
    digests are cached by (size, mtime, ctime, inode) in the weights cache folder, so a rerun reads only what
    changed. Logs, manifests and configs (which carry timings) are left out; a missing path hashes to the empty
    digest (open_dataset reports it).
    """
    try:
        _, path, _, image_root = parse_spec(spec)
    except DatasetError:
        return hashlib.sha256(b"").hexdigest()[:16]
    h = hashlib.sha256()
    cache = _load_cache()
    for root in (path, Path(image_root) if image_root else None):
        if root is None:
            continue
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                           and p.parent.name != "logs" and p.name not in ("manifest.json", "config.json"))
        else:
            files = [root] if root.is_file() else []
        for f in files:
            rel = f.relative_to(root) if root.is_dir() else f.name
            try:
                h.update(f"{rel}:{f.stat().st_size}:{_file_digest(f, cache)}\n".encode())
            except OSError as e:  # unreadable: its name and the error still make a stable identity
                h.update(f"{rel}:unreadable:{type(e).__name__}\n".encode())
    _save_cache(cache)
    return h.hexdigest()[:16]


def _not_a_plain_path(p: Path) -> str | None:
    """Why a path that exists in some form cannot be read as data (None when it is a file, a folder or absent):
    a symlink loop or a dangling link, a FIFO, socket or device (reading a FIFO blocks forever)."""
    import stat

    try:
        st = os.stat(p)
    except OSError as e:
        if os.path.islink(p):
            return ("a symbolic link that loops" if e.errno == 40 else "a symbolic link to a missing target "
                    f"({os.readlink(p)})")
        return None if e.errno == 2 else f"cannot be read ({e.strerror})"
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    kind = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
            stat.S_ISBLK: "a block device"}
    return next((f"{v}, not a file or folder" for f, v in kind.items() if f(st.st_mode)), "not a file or folder")


def open_dataset(spec: str) -> Dataset:
    """Open a dataset from a spec (see module doc). Raises DatasetError before any work is done."""
    name, p, split, image_root = parse_spec(spec)
    for q in (p, Path(image_root) if image_root else None):
        why = _not_a_plain_path(q) if q is not None else None
        if why:
            raise DatasetError(f"dataset path {q}: {why}")
    if not p.exists():
        hint = ""
        if "\\" not in str(spec) and Path(str(spec)).exists():
            hint = f" (the file {spec!r} exists: escape = # , : with a backslash to use it as a path)"
        raise DatasetError(f"dataset path does not exist: {p}{hint}")
    if p.is_dir() and (p / "annotations.json").is_file():
        if image_root is not None:
            raise DatasetError(f"{spec}: ::IMAGE_DIR is for COCO json files; an ObjaScale folder has its images/")
        return ObjaScaleDataset(p, name=name, split=split or "eval")
    if split is not None:
        raise DatasetError(f"{spec}: #{split} selects a split of an ObjaScale folder; {p} is not one "
                           "(escape a # that belongs to the path as \\#)")
    if looks_like_sa1b(p):
        if image_root is not None:
            raise DatasetError(f"{spec}: ::IMAGE_DIR is for COCO json files; SA-1B pairs hold their images")
        return Sa1bDataset(p, name=name)
    if p.is_dir():
        h5 = sorted(list(p.glob("*.hdf5")) + list(p.glob("*.h5")))
        if len(h5) == 1 and image_root is None:
            return FlipHdf5Dataset(h5[0], name=name or p.name)
        raise DatasetError(f"{p}: no annotations.json, no SA-1B shard or pair and not exactly one .hdf5 file inside; "
                           "cannot tell the format")
    if p.suffix.lower() in (".h5", ".hdf5"):
        if image_root is not None:
            raise DatasetError(f"{spec}: ::IMAGE_DIR is for COCO json files; an HDF5 file holds its images")
        return FlipHdf5Dataset(p, name=name)
    if p.suffix.lower() == ".json":
        return CocoDataset(p, image_root, name=name)
    raise DatasetError(f"{p}: unknown dataset format (expected a folder, .json, .hdf5 or an SA-1B .tar)")


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


def select_counted(dataset: Dataset, sel: Selection) -> tuple[list[tuple[ImageEntry, list[ObjectEntry]]], dict]:
    """select(), plus how many indexed objects each step left out: {area_filtered, empty_masks_skipped,
    not_sampled, other_shard}.

    Area bounds use each object's decoded mask (its pixel count over the image's), never the json's `area`
    field, which third-party files get wrong; COCO adapters count RLE pixels without decoding. Objects whose
    mask cannot be read stay in: they fail, and are counted, in the run. Then the limit picks a fixed random
    subset (seeded) of what the bounds kept, the same for every shard and every model; shards take every n-th
    image."""
    counts = Counter()
    bounded = sel.min_area_ratio is not None or sel.max_area_ratio is not None
    chosen = []
    for entry in dataset.index():
        objs = list(entry.objects)
        if bounded:
            areas = dataset.mask_areas(entry, [o.object_id for o in objs])
            keep = []
            for o in objs:
                a = areas.get(o.object_id)
                if isinstance(a, tuple) and a[0] == 0:
                    counts["empty_masks_skipped"] += 1
                elif isinstance(a, tuple) and not sel.area_ok(a[0] / a[1]):
                    counts["area_filtered"] += 1
                else:
                    keep.append(o)
            objs = keep
        if objs:
            chosen.append((entry, objs))
    if sel.limit is not None:
        flat = [(i, j) for i, (_, objs) in enumerate(chosen) for j in range(len(objs))]
        if sel.limit < len(flat):
            rng = np.random.default_rng(sel.seed)
            keep = set(map(tuple, np.asarray(flat).reshape(-1, 2)[rng.choice(len(flat), sel.limit, replace=False)].tolist()))
            counts["not_sampled"] += len(flat) - len(keep)
            chosen = [(e, [o for j, o in enumerate(objs) if (i, j) in keep]) for i, (e, objs) in enumerate(chosen)]
            chosen = [(e, objs) for e, objs in chosen if objs]
    k, n = sel.shard
    mine = [c for i, c in enumerate(chosen) if i % n == k]
    counts["other_shard"] += sum(len(o) for _, o in chosen) - sum(len(o) for _, o in mine)
    return mine, {key: v for key, v in counts.items() if v}


def select(dataset: Dataset, sel: Selection) -> list[tuple[ImageEntry, list[ObjectEntry]]]:
    """Images with their chosen objects (see select_counted)."""
    return select_counted(dataset, sel)[0]


def prompts_of(dataset: Dataset, entry: ImageEntry, objects) -> tuple[np.ndarray, list, list[np.ndarray], int]:
    """One image and its chosen objects, decoded → (image, prompts carrying their ids, masks, objects unusable).

    An object is unusable when its mask is missing, of another size, empty, or gives no prompt. Raises ItemError or
    ValueError when the image or its masks cannot be read at all (the caller counts those objects)."""
    from ..image import check_image
    from ..prompt import prompts_from_masks

    image = check_image(dataset.load_image(entry), f"image {entry.image_id}")
    ids = [o.object_id for o in objects]
    made = prompts_from_masks(dataset.load_masks(entry, ids), ids, image.shape, entry.image_id)
    ok = [p for p in made if p.prompt is not None]
    return image, [p.prompt for p in ok], [p.mask for p in ok], len(made) - len(ok)
