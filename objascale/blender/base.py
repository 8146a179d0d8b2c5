"""Constants and errors shared by the Blender modules and the worker; plain Python (no bpy), so the runner and the
tests can use them without Blender."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

TARGET_INDEX = 1  # pass_index of the target; distractors get 2, 3, ...


class AssetError(RuntimeError):
    """The planned object or HDRI cannot be used (import failed, no geometry...): re-draw."""


def new_tmpdir(parent: str | None = None) -> str:
    return tempfile.mkdtemp(prefix="objascale-", dir=parent)


# the up axis each importer assumes (Blender 5.0 defaults: obj_import up_axis='Y', ply/stl_import 'Z', glTF is Y-up
# by specification, FBX defaults to Y when the file does not say)
IMPORTER_UP_AXIS = {".obj": "Y", ".glb": "Y", ".gltf": "Y", ".fbx": "Y", ".ply": "Z", ".stl": "Z"}
_Y_UP_TO_Z_UP = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]  # +90° about X: file +Y becomes Blender +Z
_Z_UP_UNDO = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]  # -90° about X: undoes the importer's Y-up turn


def up_axis_correction(suffix: str, declared: str) -> list[list[float]]:
    """Rotation (Blender frame) that makes the object's declared up axis point up after the importer's own turn."""
    assumed = IMPORTER_UP_AXIS.get(suffix.lower(), "Z")
    declared = (declared or assumed).upper()
    if declared == assumed:
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    return _Z_UP_UNDO if declared == "Z" else _Y_UP_TO_Z_UP


def obj_material_warnings(path: Path) -> list[str]:
    """What the record says about an OBJ's materials. Blender's importer falls back to <stem>.mtl beside the OBJ
    when the named library is missing, and then renders textured: say which file it used, not "untextured"."""
    missing = obj_missing_mtllibs(path)
    if not missing:
        return []
    fallback = path.with_suffix(".mtl")
    if fallback.is_file() and fallback.name not in missing:
        return [f"missing material library {', '.join(missing)}: materials read from {fallback.name} beside the OBJ "
                "(Blender's fallback)"]
    return [f"missing material library {m}: rendered untextured" for m in missing]


def obj_missing_mtllibs(path: Path) -> list[str]:
    """Material libraries an OBJ names (mtllib) that do not exist next to it: Blender then imports it untextured."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    missing = []
    for m in re.finditer(rb"^[ \t]*mtllib[ \t]+(.+?)[ \t]*\r?$", data, re.M):
        name = m.group(1).decode("utf-8", "replace")
        # one name with spaces, or several names separated by spaces (both occur in the wild)
        if (path.parent / name).is_file():
            continue
        missing += [n for n in name.split() if not (path.parent / n).is_file()]
    return missing
