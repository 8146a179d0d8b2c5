"""Objaverse objects with LVIS categories, through the `objaverse` package and its own cache.

Two ways in:
  - `--objaverse-download` (opt-in): N objects per category of the committed list (objaverse_categories.txt) are
    chosen from `objaverse.load_lvis_annotations()`, fetched with `objaverse.load_objects` (`--objaverse-processes`
    downloads at a time) and their licences read with `objaverse.load_annotations(uids)`. Failed downloads and corrupt GLBs are skipped
    and counted (config.json "objaverse" and the printed summary).
  - without it: whatever LVIS objects the cache already holds (filled elsewhere, copied here). Nothing is downloaded.

The cache is the package's: ~/.objaverse/hf-objaverse-v1, or --objaverse-dir (the package is pointed there through its
module paths BASE_PATH / _VERSIONED_PATH, the only place it reads them).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import struct
from pathlib import Path

from .objects import ObjectAsset, ObjectSourceError, normalise_category, split_of

log = logging.getLogger(__name__)
CATEGORY_LIST = Path(__file__).with_name("objaverse_categories.txt")
LICENCE_NAMES = {"by": "CC-BY-4.0", "by-sa": "CC-BY-SA-4.0", "by-nd": "CC-BY-ND-4.0", "by-nc": "CC-BY-NC-4.0",
                 "by-nc-sa": "CC-BY-NC-SA-4.0", "by-nc-nd": "CC-BY-NC-ND-4.0", "cc0": "CC0-1.0"}
HINT = ("fill it with --objaverse-download (needs internet), or on another machine with: pip install objaverse; "
        "python -c \"import objaverse; a=objaverse.load_lvis_annotations(); objaverse.load_objects([u for v in "
        "a.values() for u in v])\" and copy ~/.objaverse here or pass --objaverse-dir")


def cache_dir(objaverse_dir: str = "") -> Path:
    return Path(objaverse_dir).expanduser() if objaverse_dir else Path.home() / ".objaverse" / "hf-objaverse-v1"


def committed_categories() -> list[str]:
    """The 68 LVIS category names, in priority order (see the file's header for how they were chosen)."""
    return [ln.strip() for ln in CATEGORY_LIST.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def glb_problem(path: Path) -> str | None:
    """None for a plausible binary glTF (magic, version 2, declared length = file size), else the reason."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except OSError as e:
        return f"missing or unreadable: {e.strerror or e}"
    if len(head) < 12 or head[:4] != b"glTF":
        return "not a binary glTF (bad magic)"
    version, length = struct.unpack("<II", head[4:12])
    if version != 2:
        return f"glTF version {version}, need 2"
    if length != size:
        return f"truncated: header says {length} bytes, file has {size}"
    return None


def licence_of(ann: dict) -> tuple[str, str]:
    """(licence, attribution) from one Objaverse metadata entry (Sketchfab fields)."""
    lic = str(ann.get("license") or "")
    user = ann.get("user") or {}
    who = user.get("displayName") or user.get("username") or "unknown author"
    profile = user.get("profileUrl") or ""
    attribution = f"\"{ann.get('name', '')}\" by {who}" + (f" ({profile})" if profile else "") + \
        f", {ann.get('viewerUrl') or ann.get('uri') or ''}, via Objaverse"
    return LICENCE_NAMES.get(lic, lic or "unknown"), attribution


def _selection_key(category: str, uid: str) -> bytes:
    # a fixed, run-independent order: the same N objects are picked whatever the seed or the cache contents
    return hashlib.sha256(f"{category}/{uid}".encode()).digest()


def choose_uids(lvis: dict[str, list[str]], categories: list[str], per_category: int, split: str,
                eval_fraction: float) -> dict[str, list[str]]:
    """N uids per category within the split, by a hash of (category, uid)."""
    out = {}
    for cat in categories:
        uids = [u for u in lvis.get(cat, []) if split == "all" or split_of(f"objaverse:{u}", eval_fraction) == split]
        out[cat] = sorted(uids, key=lambda u: _selection_key(cat, u))[:per_category]
    return out


def _point_package_at(base: Path):
    import objaverse

    objaverse.BASE_PATH = str(base.parent)
    objaverse._VERSIONED_PATH = str(base)
    return objaverse


def _read_gz_json(p: Path):
    with gzip.open(p, "rt") as f:
        return json.load(f)


def wanted_categories(cfg, available: set[str]) -> list[str]:
    if cfg.categories:
        want = [c.strip().replace(" ", "_") for c in cfg.categories]
        by_norm = {normalise_category(c): c for c in available}
        return [c if c in available else by_norm.get(normalise_category(c), c) for c in want]
    cats = committed_categories()
    missing = [c for c in cats if c not in available]
    if missing:
        log.warning("Objaverse LVIS annotations lack %d listed categories: %s", len(missing), missing)
    cats = [c for c in cats if c in available]
    return cats[: cfg.num_categories] if cfg.num_categories > 0 else cats


def objaverse_catalog(cfg, download: bool) -> tuple[list[ObjectAsset], dict]:
    """The chosen objects of the committed categories, fetched when `download`; returns (objects, report)."""
    base = cache_dir(cfg.objaverse_dir)
    if download:
        try:
            ov = _point_package_at(base)
        except ImportError:
            raise ObjectSourceError("--objaverse-download needs the objaverse package: pip install -e '.[objaverse]' "
                                    "(keeps numpy<2)") from None
        try:
            lvis = ov.load_lvis_annotations()
        except Exception as e:  # network, HTTP or a damaged file: nothing can be chosen
            raise ObjectSourceError(f"cannot load the Objaverse LVIS annotations into {base}: {e}; {HINT}") from None
    else:
        if not (base / "lvis-annotations.json.gz").is_file():
            raise ObjectSourceError(f"Objaverse cache not found at {base} (need lvis-annotations.json.gz); {HINT}")
        lvis = _read_gz_json(base / "lvis-annotations.json.gz")
    cats = wanted_categories(cfg, set(lvis))
    chosen = choose_uids(lvis, cats, cfg.objaverse_per_category, cfg.split, cfg.eval_fraction)
    uids = [u for c in cats for u in chosen[c]]
    report = {"cache": str(base), "categories": len(cats), "per_category": cfg.objaverse_per_category,
              "requested": len(uids), "download_failed": [], "corrupt": [], "no_metadata": []}
    paths: dict[str, str] = {}
    if download:
        paths, failed = _fetch(ov, uids, cfg.objaverse_processes)
        report["download_failed"] = failed
        anns = _annotations(ov, [u for u in uids if u in paths])
    else:
        rel = _read_gz_json(base / "object-paths.json.gz") if (base / "object-paths.json.gz").is_file() else {}
        paths = {u: str(base / rel[u]) for u in uids if u in rel}
        report["download_failed"] = [{"uid": u, "reason": "not in the cache (no download without --objaverse-download)"}
                                     for u in uids if u not in rel]
        anns = _cached_annotations(base)
    objects = []
    for cat in cats:
        for uid in chosen[cat]:
            if uid not in paths:
                continue
            problem = glb_problem(Path(paths[uid]))
            if problem:
                log.warning("Objaverse object %s skipped: %s", uid, problem)
                report["corrupt"].append({"uid": uid, "path": paths[uid], "reason": problem})
                continue
            if uid not in anns:  # no licence known: not rendered
                report["no_metadata"].append(uid)
                continue
            lic, attr = licence_of(anns[uid])
            objects.append(ObjectAsset(id=f"objaverse:{uid}", source="objaverse", category=normalise_category(cat),
                                       path=paths[uid], name=str(anns[uid].get("name") or uid), license=lic,
                                       attribution=attr, up_axis="Y"))
    report["usable"] = len(objects)
    report["skipped"] = len(report["download_failed"]) + len(report["corrupt"]) + len(report["no_metadata"])
    report["objects"] = [{"uid": o.id.split(":", 1)[1], "category": o.category, "license": o.license,
                          "attribution": o.attribution} for o in objects]
    if not objects:
        raise ObjectSourceError(f"no usable Objaverse object in {base} for {len(cats)} categories "
                                f"({report['skipped']} skipped); {HINT}")
    return sorted(objects, key=lambda a: a.id), report


def _fetch(ov, uids: list[str], parallel: int) -> tuple[dict[str, str], list[dict]]:
    """objaverse.load_objects for every uid, `parallel` at a time; a failed download is skipped and counted.

    Not load_objects(uids, download_processes=n): its multiprocessing pool hangs for good when one download raises
    urllib's HTTPError (a 404 or 5xx), which cannot be unpickled in the parent. Each call here fetches one uid
    (download_processes=1) in a thread; the package still decides the URL, the cache path and the atomic rename."""
    from concurrent.futures import ThreadPoolExecutor

    def one(uid: str):
        try:
            got = ov.load_objects([uid], download_processes=1)
        except Exception as e:
            return uid, None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return uid, got.get(uid), None if uid in got else "not in object-paths.json.gz"

    paths, failed = {}, []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for uid, path, err in pool.map(one, uids):
            if err:
                log.warning("Objaverse object %s not downloaded: %s", uid, err)
                failed.append({"uid": uid, "reason": err})
            else:
                paths[uid] = path
    return paths, failed


def _annotations(ov, uids: list[str]) -> dict[str, dict]:
    """objaverse.load_annotations (fetches metadata/NNN-NNN.json.gz as needed); a failed shard loses only its uids."""
    try:
        return dict(ov.load_annotations(uids))
    except Exception as e:
        log.warning("Objaverse metadata download failed (%s); trying object by object", e)
    out = {}
    for uid in uids:
        try:
            out.update(ov.load_annotations([uid]))
        except Exception:
            pass
    return out


def _cached_annotations(base: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in sorted((base / "metadata").glob("*.json.gz")):
        try:
            out.update(_read_gz_json(p))
        except (OSError, ValueError, EOFError) as e:
            log.warning("Objaverse metadata %s unreadable: %s", p, e)
    return out


def objaverse_objects(cache: str | Path = "") -> tuple[list[ObjectAsset], dict]:
    """Every LVIS object whose GLB the cache holds (no download); corrupt GLBs skipped and counted."""
    base = cache_dir(str(cache))
    lvis, paths = base / "lvis-annotations.json.gz", base / "object-paths.json.gz"
    if not lvis.is_file() or not paths.is_file():
        raise ObjectSourceError(f"Objaverse cache not found at {base} (need lvis-annotations.json.gz and "
                                f"object-paths.json.gz); {HINT}")
    by_cat, rel_paths = _read_gz_json(lvis), _read_gz_json(paths)
    anns = _cached_annotations(base)
    out, report = [], {"cache": str(base), "corrupt": [], "missing": 0}
    for cat, uids in by_cat.items():
        for uid in uids:
            rel = rel_paths.get(uid)
            if not rel or not (base / rel).is_file():
                report["missing"] += 1  # not downloaded: the usual state of a partial cache
                continue
            problem = glb_problem(base / rel)
            if problem:
                log.warning("Objaverse object %s skipped: %s", uid, problem)
                report["corrupt"].append({"uid": uid, "path": str(base / rel), "reason": problem})
                continue
            lic, attr = licence_of(anns[uid]) if uid in anns else ("see Objaverse annotations (metadata not cached)", "")
            out.append(ObjectAsset(id=f"objaverse:{uid}", source="objaverse", category=normalise_category(cat),
                                   path=str(base / rel), name=uid, license=lic, attribution=attr, up_axis="Y"))
    if not out:
        raise ObjectSourceError(f"Objaverse cache {base} has annotations but none of the LVIS objects' GLBs; {HINT}")
    report["usable"] = len(out)
    return sorted(out, key=lambda a: a.id), report
