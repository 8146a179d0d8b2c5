"""Object Index renders: low-resolution probes and the exact mask (1 sample at pixel centres, no filter, no denoising),
optionally only inside a pixel box."""
from __future__ import annotations

import math
import os

import bpy
import mathutils
import numpy as np

from .scene import set_border

def _read_exr_part(path: str, suffix: str) -> np.ndarray:
    import OpenEXR

    f = OpenEXR.File(path)
    for part in f.parts:
        for name, ch in part.channels.items():
            if name.endswith(suffix):
                return np.asarray(ch.pixels)
    raise RuntimeError(f"channel *{suffix} not in {path}")


def projected_box(sc, co, pass_index: int, width: int, height: int, margin: int = 2):
    """Conservative pixel box (x0, y0, x1, y1), exclusive ends, of every mesh with this pass_index: the projection
    of their bounding-box corners (the object lies inside its box, so its silhouette inside the corners' hull),
    plus `margin` px, clipped to the frame. None when a corner is behind the camera or nothing projects in frame."""
    from bpy_extras.object_utils import world_to_camera_view

    xs, ys = [], []
    for o in sc.objects:
        if o.type != "MESH" or o.pass_index != pass_index:
            continue
        mw = o.matrix_world
        for c in o.bound_box:
            p = world_to_camera_view(sc, co, mw @ mathutils.Vector(c))
            if p.z <= co.data.clip_start:
                return None
            xs.append(p.x * width)
            ys.append((1.0 - p.y) * height)
    if not xs:
        return None
    x0, x1 = max(0, math.floor(min(xs)) - margin), min(width, math.ceil(max(xs)) + margin)
    y0, y1 = max(0, math.floor(min(ys)) - margin), min(height, math.ceil(max(ys)) + margin)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _has_transparent_material(sc) -> bool:
    """True when a mesh's material may be see-through for Cycles (Transparent BSDF, Principled alpha < 1 or
    linked, holdout): there the index pass depends on shading (alpha threshold), so it must keep its materials."""
    for o in sc.objects:
        if o.type != "MESH":
            continue
        for slot in o.material_slots:
            mat = slot.material
            if mat is None or not mat.node_tree:
                continue
            for n in mat.node_tree.nodes:
                if n.bl_idname in ("ShaderNodeBsdfTransparent", "ShaderNodeHoldout", "ShaderNodeGroup"):
                    return True
                if n.bl_idname == "ShaderNodeBsdfPrincipled":
                    a = n.inputs.get("Alpha")
                    if a is not None and (a.is_linked or a.default_value < 1.0):
                        return True
    return False


def _mask_material():
    """One holdout material: as override it skips all shading (no light sampling) while ids are still written."""
    mat = bpy.data.materials.get("objascale_mask_override")
    if mat is None:
        mat = bpy.data.materials.new("objascale_mask_override")
        mat.use_nodes = True
        nt = mat.node_tree
        for n in list(nt.nodes):
            nt.nodes.remove(n)
        out = nt.nodes.new("ShaderNodeOutputMaterial")
        nt.links.new(nt.nodes.new("ShaderNodeEmission").outputs[0], out.inputs["Surface"])
    return mat


def render_index(sc, width: int, height: int, tmpdir: str, box_xyxy=None, fast_shading: bool = True) -> np.ndarray:
    """Object Index pass (H, W) int, exact: 1 sample at the pixel centre, no filtering, no denoising.

    With box_xyxy only that pixel box is rendered (border + crop; pixel centres do not move) and the rest of the
    returned array is 0: the caller passes a box that contains every pixel where the wanted id can appear.
    Only the index pass is written (no Combined), uncompressed: the EXR write/read dominated at 10+ MP.
    """
    c = sc.cycles
    vl = sc.view_layers[0]
    saved = (c.samples, c.use_adaptive_sampling, c.use_denoising, c.filter_width, c.max_bounces, sc.render.use_border,
             vl.use_pass_combined)
    sc.render.resolution_x, sc.render.resolution_y = width, height
    c.samples, c.use_adaptive_sampling, c.use_denoising = 1, False, False
    c.filter_width = 0.01
    c.max_bounces = 0
    vl.use_pass_combined = False
    # without see-through materials the ids do not depend on shading: an emission override skips light sampling
    # (5x faster at 1 spp); with them the real materials decide, through the pass alpha threshold, what is hit
    override = fast_shading and not _has_transparent_material(sc)
    if override:
        vl.material_override = _mask_material()
    if box_xyxy is not None:
        set_border(sc, width, height, box_xyxy)
    else:
        sc.render.use_border = False
    st = sc.render.image_settings
    st.media_type = "MULTI_LAYER_IMAGE"
    st.exr_codec = "NONE"
    st.color_depth = "32"
    out = os.path.join(tmpdir, "index.exr")
    sc.render.filepath = out
    try:
        bpy.ops.render.render(write_still=True)
        idx = np.rint(_read_exr_part(out, "Object Index.X")).astype(np.int32)
        os.unlink(out)
    finally:
        (c.samples, c.use_adaptive_sampling, c.use_denoising, c.filter_width, c.max_bounces, sc.render.use_border,
         vl.use_pass_combined) = saved
        vl.material_override = None
    # EXR rows run top to bottom; ids are stored as floats holding exact small integers
    if box_xyxy is None:
        return idx
    x0, y0, x1, y1 = box_xyxy
    if idx.shape != (y1 - y0, x1 - x0):
        raise RuntimeError(f"border render returned {idx.shape}, expected {(y1 - y0, x1 - x0)} for box {box_xyxy}")
    full = np.zeros((height, width), np.int32)
    full[y0:y1, x0:x1] = idx
    return full


