"""Object sources behind one record type: Sweet Home 3D catalogue, a local folder, an Objaverse cache.

A source yields `ObjectAsset`s in a deterministic order (sorted by id). The split is a pure function of the id
(hash), so training and evaluation renders never share an object whatever the source or run.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".fbx", ".ply", ".stl")


class ObjectSourceError(RuntimeError):
    """The object source cannot be used at all (missing cache, empty folder): a configuration error."""


@dataclass(frozen=True)
class ObjectAsset:
    id: str  # globally unique, e.g. "sweethome3d:BlendSwap-CC-0#armchair"
    source: str
    category: str
    path: str  # the mesh file, or "archive.sh3f!member" for zipped catalogue entries
    name: str = ""
    supercategory: str = ""
    license: str = ""
    attribution: str = ""
    rotation: tuple[float, ...] = ()  # row-major 3×3 in the file's own (Y-up for OBJ) frame, from the catalogue
    size_cm: tuple[float, ...] = ()  # real width, depth, height when the catalogue gives them
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rotation"] = list(self.rotation)
        d["size_cm"] = list(self.size_cm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectAsset":
        d = dict(d)
        d["rotation"] = tuple(d.get("rotation") or ())
        d["size_cm"] = tuple(d.get("size_cm") or ())
        return cls(**d)


def split_of(object_id: str, eval_fraction: float) -> str:
    """'eval' for a fixed hash-defined fraction of ids, 'train' for the rest; independent of run and source order."""
    h = int.from_bytes(hashlib.sha256(object_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "eval" if h < eval_fraction else "train"


def normalise_category(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower().replace("_", " ")) or "object"


# ----------------------------------------------------------------------------- local folder
def local_objects(root: str | Path, manifest: str | Path | None = None) -> list[ObjectAsset]:
    """Mesh files under `root`. Category = first subfolder (or 'object' at top level), or the manifest's.

    Manifest: CSV with header path,category[,license,attribution,name] or a JSON list of such dicts; paths
    relative to `root`.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ObjectSourceError(f"object folder {root} does not exist")
    rows: list[dict] = []
    if manifest:
        mp = Path(manifest).expanduser()
        if not mp.is_file():
            raise ObjectSourceError(f"object manifest {mp} does not exist")
        if mp.suffix.lower() == ".json":
            rows = json.loads(mp.read_text())
        else:
            with mp.open(newline="") as f:
                rows = list(csv.DictReader(f))
    else:
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in MESH_SUFFIXES and p.is_file():
                rel = p.relative_to(root)
                rows.append({"path": rel.as_posix(), "category": rel.parts[0] if len(rel.parts) > 1 else "object"})
    out = []
    for r in rows:
        rel = str(r["path"])
        out.append(ObjectAsset(id=f"local:{rel}", source="local", category=normalise_category(str(r.get("category") or "object")),
                               path=str(root / rel), name=str(r.get("name") or Path(rel).stem),
                               license=str(r.get("license") or "user-supplied (licence not recorded)"),
                               attribution=str(r.get("attribution") or "")))
    if not out:
        raise ObjectSourceError(f"object folder {root} holds no {'/'.join(MESH_SUFFIXES)} files")
    return sorted(out, key=lambda a: a.id)


# ----------------------------------------------------------------------------- Objaverse (offline cache)
def objaverse_objects(cache_dir: str | Path = "") -> list[ObjectAsset]:
    """Objaverse objects with LVIS categories, read from the local cache the `objaverse` package writes.

    Nothing is downloaded here. The cache is filled on a machine with internet by
        import objaverse; ann = objaverse.load_lvis_annotations(); objaverse.load_objects([u for v in ann.values() for u in v])
    which writes lvis-annotations.json.gz, object-paths.json.gz and glbs/ under ~/.objaverse/hf-objaverse-v1.
    """
    base = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".objaverse" / "hf-objaverse-v1"
    lvis = base / "lvis-annotations.json.gz"
    paths = base / "object-paths.json.gz"
    hint = ("fill it on a machine with internet: pip install objaverse; python -c \"import objaverse; "
            "a=objaverse.load_lvis_annotations(); objaverse.load_objects([u for v in a.values() for u in v])\" "
            "then copy ~/.objaverse here or pass --objaverse-dir")
    if not lvis.is_file() or not paths.is_file():
        raise ObjectSourceError(f"Objaverse cache not found at {base} (need lvis-annotations.json.gz and object-paths.json.gz); {hint}")
    with gzip.open(lvis, "rt") as f:
        by_cat: dict[str, list[str]] = json.load(f)
    with gzip.open(paths, "rt") as f:
        rel_paths: dict[str, str] = json.load(f)
    licences = _objaverse_licences(base)
    out = []
    for cat, uids in by_cat.items():
        for uid in uids:
            rel = rel_paths.get(uid)
            if rel and (base / rel).is_file():
                lic, attr = licences.get(uid, ("see Objaverse annotations (not cached)", ""))
                out.append(ObjectAsset(id=f"objaverse:{uid}", source="objaverse", category=normalise_category(cat),
                                       path=str(base / rel), name=uid, license=lic, attribution=attr))
    if not out:
        raise ObjectSourceError(f"Objaverse cache {base} has annotations but none of the LVIS objects' GLBs; {hint}")
    return sorted(out, key=lambda a: a.id)


def _objaverse_licences(base: Path) -> dict[str, tuple[str, str]]:
    """uid -> (licence, attribution) from cached metadata/*.json.gz, when the user downloaded annotations."""
    out: dict[str, tuple[str, str]] = {}
    for p in sorted((base / "metadata").glob("*.json.gz")):
        try:
            with gzip.open(p, "rt") as f:
                for uid, ann in json.load(f).items():
                    user = (ann.get("user") or {}).get("username", "")
                    out[uid] = (str(ann.get("license") or "unknown"), f"{user} via Sketchfab/Objaverse ({ann.get('viewerUrl', '')})")
        except (OSError, ValueError) as e:
            log.warning("Objaverse metadata %s unreadable: %s", p, e)
    return out


# ----------------------------------------------------------------------------- selection
def load_objects(cfg) -> list[ObjectAsset]:
    """All objects of the configured source (both splits), deterministic order."""
    if cfg.object_source == "local":
        return local_objects(cfg.object_dir, cfg.object_manifest or None)
    if cfg.object_source == "objaverse":
        return objaverse_objects(cfg.objaverse_dir)
    from .sweethome3d import sweethome3d_objects

    return sweethome3d_objects(cfg.sweethome3d_dir or None)


def select_objects(objects: list[ObjectAsset], cfg) -> tuple[list[str], dict[str, list[ObjectAsset]]]:
    """Categories to render and their objects within the configured split.

    Explicit `categories` win; else the `num_categories` largest categories of the split (ties by name); else all.
    """
    in_split = [o for o in objects if split_of(o.id, cfg.eval_fraction) == cfg.split]
    by_cat: dict[str, list[ObjectAsset]] = {}
    for o in in_split:
        by_cat.setdefault(o.category, []).append(o)
    if cfg.categories:
        wanted = [normalise_category(c) for c in cfg.categories]
        missing = [c for c in wanted if c not in by_cat]
        if missing:
            raise ObjectSourceError(f"categories without objects in the {cfg.split} split: {missing}")
        cats = wanted
    else:
        cats = sorted(by_cat, key=lambda c: (-len(by_cat[c]), c))
        if cfg.num_categories > 0:
            if len(cats) < cfg.num_categories:
                log.warning("only %d categories in the %s split, %d asked", len(cats), cfg.split, cfg.num_categories)
            cats = cats[: cfg.num_categories]
        cats = sorted(cats)
    if not cats:
        raise ObjectSourceError(f"no objects in the {cfg.split} split of source {cfg.object_source!r}")
    return cats, {c: by_cat[c] for c in cats}
