"""Blender scene building and rendering for one planned image. Runs only inside a worker process (imports bpy).

Pipeline per attempt:
  1. fresh empty scene; HDRI world (rotation, strength); target imported, normalised (radius 1, centred),
     catalogue rotation, random pose; pass_index 1 (distractors 2, 3, ...).
  2. probe: low-resolution Object-Index renders at a reference distance give the projected area; the camera
     distance follows from area ∝ 1/d² and is refined by re-probing while the object is large enough to measure.
  3. placement: camera lens shift moves the object anywhere in frame without changing its projected shape.
  4. beauty render (Cycles, adaptive sampling, OIDN); small objects: low-sample full frame + full-quality
     region around the object pasted over it (the background far from the object is the HDRI lookup only).
  5. mask render: Object Index pass at 1 sample, filter width 0.01 px (samples at pixel centres), no bounces,
     so ids are exact integers of the surface seen through each pixel centre.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import bpy
import mathutils
import numpy as np

from objascale.plan import capped_samples

TARGET_INDEX = 1


class AssetError(RuntimeError):
    """The planned object or HDRI cannot be used (import failed, no geometry...): re-draw."""


# ----------------------------------------------------------------------------- devices
def configure_device(scene, device: str) -> str:
    """'gpu' when asked or (auto) when Cycles finds a GPU; else 'cpu'. Returns what was used."""
    scene.cycles.device = "CPU"
    if device == "cpu":
        return "cpu"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for kind in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = kind
            prefs.get_devices()
        except (TypeError, ValueError, AttributeError):
            continue
        gpus = [d for d in prefs.devices if d.type != "CPU"]
        if gpus:
            for d in prefs.devices:
                d.use = d.type != "CPU"
            scene.cycles.device = "GPU"
            return f"gpu:{kind}:{gpus[0].name}"
    if device == "gpu":
        print("objascale: --device gpu asked but Cycles found no GPU; rendering on the CPU", flush=True)
    return "cpu"


# ----------------------------------------------------------------------------- scene
def reset_scene(threads: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.render.resolution_percentage = 100
    sc.render.use_compositing = False
    sc.render.use_sequencer = False
    sc.render.film_transparent = False
    # keep the BVH and kernels between the probe, mask and beauty renders of one scene (10-50x cheaper re-renders)
    sc.render.use_persistent_data = True
    sc.view_layers[0].use_pass_object_index = True
    if threads > 0:
        sc.render.threads_mode = "FIXED"
        sc.render.threads = threads
    return sc


def setup_world(sc, hdri_path: str, rotation_deg: float, strength: float):
    if not os.path.isfile(hdri_path):
        raise AssetError(f"HDRI {hdri_path} does not exist")
    try:
        img = bpy.data.images.load(hdri_path, check_existing=True)
        if img.size[0] == 0 or img.size[1] == 0:
            raise AssetError(f"HDRI {hdri_path} could not be decoded")
    except RuntimeError as e:
        raise AssetError(f"HDRI {hdri_path} unreadable: {e}") from None
    world = bpy.data.worlds.new("objascale_world")
    sc.world = world
    world.use_nodes = True
    nt = world.node_tree
    bg = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeBackground")
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = img
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(rotation_deg))
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    bg.inputs["Strength"].default_value = strength
    return img


def env_pixels(img) -> np.ndarray:
    """The HDRI as Cycles sees it: (H, W, 4) float32 linear, row 0 = bottom (bpy Image.pixels order)."""
    w, h = img.size
    px = np.empty(w * h * img.channels, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(h, w, img.channels)
    return px if img.channels >= 3 else np.repeat(px[..., :1], 3, -1)


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
    return outer, warnings


def set_pose(outer, pose: dict, location=(0.0, 0.0, 0.0), scale: float = 1.0) -> None:
    outer.rotation_mode = "XYZ"
    outer.rotation_euler = (math.radians(pose["tilt_x_deg"]), math.radians(pose["tilt_y_deg"]), math.radians(pose["yaw_deg"]))
    outer.location = location
    outer.scale = (scale, scale, scale)


def make_camera(sc, cam_plan: dict, width: int, height: int):
    cam = bpy.data.cameras.new("objascale_cam")
    cam.lens = cam_plan["focal_mm"]
    cam.sensor_width = cam_plan["sensor_mm"]
    cam.sensor_fit = "AUTO"  # sensor spans the longer side
    cam.clip_start = 1e-3
    cam.clip_end = 1e7
    co = bpy.data.objects.new("objascale_cam", cam)
    sc.collection.objects.link(co)
    sc.camera = co
    sc.render.resolution_x, sc.render.resolution_y = width, height
    return co


def place_camera(co, cam_plan: dict, distance: float) -> None:
    az, el = math.radians(cam_plan["azimuth_deg"]), math.radians(cam_plan["elevation_deg"])
    direction = mathutils.Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
    co.location = direction * distance
    co.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()


def min_half_fov(cam_plan: dict, width: int, height: int) -> float:
    long_half = math.atan(cam_plan["sensor_mm"] / 2 / cam_plan["focal_mm"])
    return math.atan(math.tan(long_half) * min(width, height) / max(width, height))


# ----------------------------------------------------------------------------- renders
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


def _set_border(sc, width: int, height: int, box_xyxy) -> None:
    """Border + crop to the pixel box (top-left origin, exclusive ends). Blender converts the normalised border
    to pixels by truncation; a quarter-pixel bias makes truncation and rounding agree on the intended integers."""
    x0, y0, x1, y1 = box_xyxy
    sc.render.use_border = True
    sc.render.use_crop_to_border = True
    sc.render.border_min_x, sc.render.border_max_x = (x0 + 0.25) / width, (x1 + 0.25) / width
    sc.render.border_min_y, sc.render.border_max_y = (height - y1 + 0.25) / height, (height - y0 + 0.25) / height


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
        _set_border(sc, width, height, box_xyxy)
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


def _output_settings(sc, fmt: str) -> None:
    """8-bit display PNG ('png') or linear float RGBA EXR ('exr') for the next write."""
    st = sc.render.image_settings
    st.media_type = "IMAGE"
    if fmt == "png":
        st.file_format, st.color_mode, st.color_depth, st.compression = "PNG", "RGB", "8", 0
    else:
        st.file_format, st.color_mode, st.color_depth, st.exr_codec = "OPEN_EXR", "RGBA", "32", "NONE"


def _read_png_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).copy()
    os.unlink(path)
    return rgb


def _render_rgb(sc, tmpdir: str, name: str) -> np.ndarray:
    _output_settings(sc, "png")
    sc.render.filepath = out = os.path.join(tmpdir, f"{name}.png")
    bpy.ops.render.render(write_still=True)
    return _read_png_rgb(out)


def configure_beauty(sc, samples: int, cfg: dict) -> str:
    c = sc.cycles
    c.samples = int(samples)
    c.use_adaptive_sampling = True
    c.adaptive_threshold = cfg["adaptive_threshold"]
    c.adaptive_min_samples = 0  # Cycles' automatic minimum
    c.max_bounces = cfg["max_bounces"]
    # light paths: bounded per type, no caustics, clamped indirect light (fireflies cost most samples on CPU)
    c.diffuse_bounces = min(c.max_bounces, 2)
    c.glossy_bounces = min(c.max_bounces, 3)
    c.transmission_bounces = c.max_bounces
    c.transparent_max_bounces = max(c.max_bounces, 8)
    c.volume_bounces = 0
    c.caustics_reflective = c.caustics_refractive = False
    c.sample_clamp_indirect = 10.0
    c.filter_width = 1.5
    denoiser = "none"
    if cfg["denoiser"] != "none":
        try:
            c.denoiser = "OPENIMAGEDENOISE"
            c.use_denoising = True
            c.denoising_input_passes = "RGB_ALBEDO_NORMAL"
            c.denoising_prefilter = "FAST"  # albedo/normal are clean enough at our sample counts; ACCURATE costs more
            c.denoising_quality = "BALANCED"
            denoiser = "oidn"
        except TypeError:  # a build without OIDN: render without denoising rather than fail
            c.use_denoising = False
    else:
        c.use_denoising = False
    return denoiser


def render_beauty(sc, width: int, height: int, samples: int, cfg: dict, region_xyxy, tmpdir: str) -> tuple[np.ndarray, dict]:
    """RGB uint8 (H, W, 3). With region_xyxy (pixel box), full quality only there, low samples elsewhere."""
    region_px = width * height if region_xyxy is None else (region_xyxy[2] - region_xyxy[0]) * (region_xyxy[3] - region_xyxy[1])
    n = capped_samples(samples, region_px, cfg.get("sample_budget_mpx", 0.0), cfg["samples_min"])
    info = {"samples": n, "samples_planned": samples}
    info["denoiser"] = configure_beauty(sc, n, cfg)
    sc.render.resolution_x, sc.render.resolution_y = width, height
    if region_xyxy is None:
        sc.render.use_border = False
        info["mode"] = "full"
        return _render_rgb(sc, tmpdir, "beauty"), info
    x0, y0, x1, y1 = region_xyxy
    c = sc.cycles
    c.samples = cfg["background_samples"]
    c.use_adaptive_sampling = False
    c.use_denoising = False
    sc.render.use_border = False
    t = time.time()
    full = _render_rgb(sc, tmpdir, "background")
    info["background_s"] = time.time() - t
    configure_beauty(sc, n, cfg)
    sc.render.use_border = True
    sc.render.use_crop_to_border = True
    # border is normalised with y from the bottom
    sc.render.border_min_x, sc.render.border_max_x = x0 / width, x1 / width
    sc.render.border_min_y, sc.render.border_max_y = 1 - y1 / height, 1 - y0 / height
    t = time.time()
    region = _render_rgb(sc, tmpdir, "region")
    info["region_s"] = time.time() - t
    sc.render.use_border = False
    # Blender rounds the border to whole pixels: paste what came back at the rounded position
    rx0 = int(round(sc.render.border_min_x * width))
    ry1 = height - int(round(sc.render.border_min_y * height))
    rh, rw = region.shape[:2]
    ry0 = max(0, ry1 - rh)
    full[ry0:ry0 + rh, rx0:rx0 + rw] = region[: height - ry0, : width - rx0]
    info.update(mode="region", region_xyxy=[rx0, ry0, rx0 + rw, ry0 + rh])
    return full, info


def _render_exr_rgba(sc, tmpdir: str, name: str) -> np.ndarray:
    """Linear RGBA float32 (h, w, 4), rows top to bottom, premultiplied (Cycles' film)."""
    _output_settings(sc, "exr")
    sc.render.filepath = out = os.path.join(tmpdir, f"{name}.exr")
    bpy.ops.render.render(write_still=True)
    import OpenEXR

    f = OpenEXR.File(out)
    chans = f.parts[0].channels
    if "RGBA" in chans:
        rgba = np.asarray(chans["RGBA"].pixels, np.float32)
    else:
        rgba = np.stack([np.asarray(chans[k].pixels, np.float32) for k in "RGBA"], -1)
    os.unlink(out)
    return rgba


def display_rgb(sc, linear_rgb: np.ndarray, tmpdir: str) -> np.ndarray:
    """Scene-linear RGB (h, w, 3) -> display uint8 through Blender's own colour management (the scene's view
    transform, look, exposure, dither), exactly as Cycles' film output is saved."""
    h, w = linear_rgb.shape[:2]
    im = bpy.data.images.new("objascale_composite", w, h, alpha=True, float_buffer=True)
    try:
        px = np.ones((h, w, 4), np.float32)
        px[..., :3] = linear_rgb[::-1]  # bpy rows run bottom to top
        im.pixels.foreach_set(px.ravel())
        _output_settings(sc, "png")
        out = os.path.join(tmpdir, "composite.png")
        im.save_render(out, scene=sc)
    finally:
        bpy.data.images.remove(im)
    return _read_png_rgb(out)


def render_composite(sc, width: int, height: int, samples: int, cfg: dict, region_xyxy, background_linear: np.ndarray,
                     tmpdir: str) -> tuple[np.ndarray, dict]:
    """Objects by Cycles (transparent film) only inside region_xyxy, over the analytic HDRI background.

    Outside the objects' silhouettes a camera ray sees only the world (no ground, no lens effects), so the plain
    background is exact there; inside the region the composite is premultiplied over: C + (1 - alpha) * B."""
    x0, y0, x1, y1 = region_xyxy
    region_px = (x1 - x0) * (y1 - y0)
    n = capped_samples(samples, region_px, cfg.get("sample_budget_mpx", 0.0), cfg["samples_min"])
    info = {"samples": n, "samples_planned": samples, "mode": "composite", "region_xyxy": [x0, y0, x1, y1],
            "background": "analytic equirectangular lookup"}
    info["denoiser"] = configure_beauty(sc, n, cfg)
    sc.render.resolution_x, sc.render.resolution_y = width, height
    sc.render.film_transparent = True
    _set_border(sc, width, height, region_xyxy)
    t = time.time()
    try:
        rgba = _render_exr_rgba(sc, tmpdir, "region")
    finally:
        sc.render.film_transparent = False
        sc.render.use_border = False
    info["region_s"] = time.time() - t
    if rgba.shape[:2] != (y1 - y0, x1 - x0):
        raise RuntimeError(f"border render returned {rgba.shape[:2]}, expected {(y1 - y0, x1 - x0)}")
    t = time.time()
    lin = background_linear.copy()
    alpha = np.clip(rgba[..., 3:4], 0.0, 1.0)
    lin[y0:y1, x0:x1] = rgba[..., :3] + (1.0 - alpha) * lin[y0:y1, x0:x1]
    rgb = display_rgb(sc, lin, tmpdir)
    info["composite_s"] = time.time() - t
    return rgb, info


def new_tmpdir() -> str:
    return tempfile.mkdtemp(prefix="objascale-")
