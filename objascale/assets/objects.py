"""Object sources behind one record type: Sweet Home 3D catalogue, a local folder, an Objaverse cache.

A source yields `ObjectAsset`s in a deterministic order (sorted by id). The split is a pure function of the id
(hash), so training and evaluation renders never share an object whatever the source or run.
"""
from __future__ import annotations

import csv
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
    up_axis: str = ""  # "Y" or "Z": the file's up axis; "" = the format's convention (Y for OBJ/glTF/FBX, Z for PLY/STL)
    scale_to_m: float = 0.0  # metres per file unit (0 = unknown); recorded only: renders are normalised to the plan
    frame_rotation: tuple[float, ...] = ()  # row-major 3×3 applied in Blender's Z-up frame after the up-axis conversion
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("rotation", "size_cm", "frame_rotation"):
            d[k] = list(getattr(self, k))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectAsset":
        d = dict(d)
        for k in ("rotation", "size_cm", "frame_rotation"):
            d[k] = tuple(d.get(k) or ())
        return cls(**d)


def split_of(object_id: str, eval_fraction: float) -> str:
    """'eval' for a fixed hash-defined fraction of ids, 'train' for the rest; independent of run and source order."""
    h = int.from_bytes(hashlib.sha256(object_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "eval" if h < eval_fraction else "train"


def normalise_category(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower().replace("_", " ")) or "object"


# ----------------------------------------------------------------------------- local folder
UNITS_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "inch": 0.0254, "ft": 0.3048}


def euler_xyz_deg_to_matrix(angles) -> list[float]:
    """Row-major 3×3 of Blender's XYZ Euler rotation (X applied first): R = Rz @ Ry @ Rx."""
    import numpy as np

    x, y, z = (np.radians(float(a)) for a in angles)
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return [float(v) for v in (rz @ ry @ rx).ravel()]


def parse_frame(row: dict, where: str) -> dict:
    """up_axis, scale_to_m (or units) and rotation columns of one manifest row -> ObjectAsset fields."""
    out: dict = {}
    up = str(row.get("up_axis") or "").strip().upper().lstrip("+")
    if up not in ("", "Y", "Z"):
        raise ObjectSourceError(f"{where}: up_axis must be Y or Z, got {row.get('up_axis')!r}")
    out["up_axis"] = up
    scale, units = str(row.get("scale_to_m") or "").strip(), str(row.get("units") or "").strip().lower()
    try:
        out["scale_to_m"] = float(scale) if scale else UNITS_TO_M[units] if units else 0.0
    except ValueError:
        raise ObjectSourceError(f"{where}: scale_to_m must be a number, got {scale!r}") from None
    except KeyError:
        raise ObjectSourceError(f"{where}: units must be one of {sorted(UNITS_TO_M)}, got {units!r}") from None
    if out["scale_to_m"] < 0 or out["scale_to_m"] != out["scale_to_m"]:
        raise ObjectSourceError(f"{where}: scale_to_m must be >= 0, got {scale!r}")
    rot = row.get("rotation")
    if isinstance(rot, str):
        rot = [v for v in re.split(r"[\s,;]+", rot.strip().strip("[]")) if v]
    rot = list(rot or [])
    try:
        rot = [float(v) for v in rot]
    except (TypeError, ValueError):
        raise ObjectSourceError(f"{where}: rotation must be numbers, got {row.get('rotation')!r}") from None
    if len(rot) == 3:
        rot = euler_xyz_deg_to_matrix(rot)
    elif len(rot) not in (0, 9):
        raise ObjectSourceError(f"{where}: rotation needs 3 Euler XYZ angles (degrees) or 9 row-major numbers, got {len(rot)}")
    out["frame_rotation"] = tuple(rot)
    return out


def local_objects(root: str | Path, manifest: str | Path | None = None) -> list[ObjectAsset]:
    """Mesh files under `root`. Category = first subfolder (or 'object' at top level), or the manifest's.

    Manifest: CSV with header path,category[,license,attribution,name,up_axis,scale_to_m|units,rotation] or a JSON
    list of such dicts; paths relative to `root`. up_axis says which file axis points up (Y or Z; default: the
    format's convention), scale_to_m / units the file's unit (recorded), rotation an extra rotation in the Z-up
    frame (3 Euler XYZ angles in degrees, or 9 row-major numbers).
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
    for k, r in enumerate(rows):
        if not r.get("path"):
            raise ObjectSourceError(f"object manifest row {k + 1} has no path")
        rel = str(r["path"])
        out.append(ObjectAsset(id=f"local:{rel}", source="local", category=normalise_category(str(r.get("category") or "object")),
                               path=str(root / rel), name=str(r.get("name") or Path(rel).stem),
                               license=str(r.get("license") or "user-supplied (licence not recorded)"),
                               attribution=str(r.get("attribution") or ""),
                               **parse_frame(r, f"object manifest row {k + 1} ({rel})")))
    if not out:
        raise ObjectSourceError(f"object folder {root} holds no {'/'.join(MESH_SUFFIXES)} files")
    return sorted(out, key=lambda a: a.id)
