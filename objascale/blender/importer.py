"""Object import into the scene: any supported mesh format, missing textures unlinked with a warning, the object
normalised to bounding radius 1 around the origin under a root Empty that takes the pose."""
from __future__ import annotations

import os
from pathlib import Path

import bpy
import mathutils
import numpy as np

from .base import AssetError, obj_material_warnings, up_axis_correction

def _import_file(path: Path) -> None:
    ext = path.suffix.lower()
    if ext == ".obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    elif ext in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=str(path))
    elif ext == ".fbx":
        bpy.ops.import_scene.fbx(filepath=str(path))
    elif ext == ".ply":
        bpy.ops.wm.ply_import(filepath=str(path))
    elif ext == ".stl":
        bpy.ops.wm.stl_import(filepath=str(path))
    else:
        raise AssetError(f"unsupported mesh format {ext!r}: {path}")


def _fix_missing_textures(objs) -> list[str]:
    """Unlink image textures whose file is missing (Cycles would paint them magenta); return warnings."""
    warnings = []
    for o in objs:
        for slot in getattr(o, "material_slots", []):
            mat = slot.material
            if not mat or not mat.node_tree:
                continue
            for node in list(mat.node_tree.nodes):
                if node.bl_idname != "ShaderNodeTexImage" or node.image is None:
                    continue
                img = node.image
                fp = bpy.path.abspath(img.filepath) if img.filepath else ""
                if img.packed_file is None and fp and not os.path.isfile(fp):
                    warnings.append(f"missing texture {os.path.basename(fp)} in material {mat.name}")
                    mat.node_tree.nodes.remove(node)
    return warnings


def import_object(sc, asset: dict, pass_index: int, materialize) -> tuple[object, list[str]]:
    """Import, normalise to bounding radius 1 centred at the origin, apply the catalogue rotation.

    Returns the root Empty (pose goes on it) and warnings. Raises AssetError when nothing renderable came in.
    """
    path = materialize(asset["path"])
    if not Path(path).is_file():
        raise AssetError(f"object {asset['id']}: file {path} does not exist")
    before = set(bpy.data.objects)
    try:
        _import_file(Path(path))
    except (RuntimeError, ValueError, OSError, AttributeError, KeyError) as e:
        raise AssetError(f"object {asset['id']}: import failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    new = [o for o in bpy.data.objects if o not in before]
    for o in [o for o in new if o.type in ("LIGHT", "CAMERA")]:  # the HDRI is the only light
        new.remove(o)
        bpy.data.objects.remove(o, do_unlink=True)
    meshes = [o for o in new if o.type == "MESH" and len(o.data.polygons) > 0]
    if not meshes:
        raise AssetError(f"object {asset['id']}: no visible geometry (no mesh with faces) in {os.path.basename(str(path))}")
    for o in new:
        if o.name not in sc.collection.all_objects:
            sc.collection.objects.link(o)
    warnings = _fix_missing_textures(meshes)
    if Path(path).suffix.lower() == ".obj":
        warnings = obj_material_warnings(Path(path)) + warnings
    bpy.context.view_layer.update()
    root = bpy.data.objects.new(f"root_{pass_index}", None)
    sc.collection.objects.link(root)
    for o in new:
        if o.parent is None:
            o.parent = root
            o.matrix_parent_inverse = mathutils.Matrix.Identity(4)
        o.pass_index = pass_index
    from objascale.assets.sweethome3d import model_rotation_zup

    base = mathutils.Matrix.Identity(4)
    rot_zup = model_rotation_zup(asset.get("rotation") or [])
    if rot_zup is not None and Path(path).suffix.lower() == ".obj":
        base = mathutils.Matrix(rot_zup).to_4x4()
    base = mathutils.Matrix(up_axis_correction(Path(path).suffix, asset.get("up_axis") or "")).to_4x4() @ base
    if asset.get("frame_rotation"):
        base = mathutils.Matrix(np.reshape(asset["frame_rotation"], (3, 3)).tolist()).to_4x4() @ base
    root.matrix_world = base
    bpy.context.view_layer.update()
    pts = []
    for o in meshes:
        mw = o.matrix_world
        pts.extend(mw @ mathutils.Vector(c) for c in o.bound_box)
    arr = np.array([tuple(p) for p in pts])
    if not np.all(np.isfinite(arr)):
        raise AssetError(f"object {asset['id']}: non-finite vertex coordinates")
    lo, hi = arr.min(0), arr.max(0)
    radius = float(np.linalg.norm(hi - lo) / 2)
    if radius <= 1e-9:
        raise AssetError(f"object {asset['id']}: degenerate geometry (zero extent)")
    centre = mathutils.Vector(((lo + hi) / 2).tolist())
    norm = mathutils.Matrix.Scale(1.0 / radius, 4) @ mathutils.Matrix.Translation(-centre) @ base
    # an inner Empty holds the normalisation, the outer root takes pose/scale/location
    inner = root
    inner.matrix_world = norm
    outer = bpy.data.objects.new(f"pose_{pass_index}", None)
    sc.collection.objects.link(outer)
    inner.parent = outer
    inner.matrix_parent_inverse = mathutils.Matrix.Identity(4)
    inner.matrix_basis = norm
    outer["extent_file_units"] = [float(v) for v in hi - lo]  # x, y, z extent in the upright frame (before pose)
    return outer, warnings


