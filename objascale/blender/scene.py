"""Blender scene for one planned image: device, empty scene, HDRI world, camera, pose. Worker processes only (bpy).

Files of this package: scene.py (this), importer.py (object import and normalisation), masks.py (Object Index
renders), beauty.py (Cycles beauty and the composite over the analytic background, background.py).

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

import bpy
import mathutils
import numpy as np

from .base import AssetError

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



def set_border(sc, width: int, height: int, box_xyxy) -> None:
    """Border + crop to the pixel box (top-left origin, exclusive ends). Blender converts the normalised border
    to pixels by truncation; a quarter-pixel bias makes truncation and rounding agree on the intended integers."""
    x0, y0, x1, y1 = box_xyxy
    sc.render.use_border = True
    sc.render.use_crop_to_border = True
    sc.render.border_min_x, sc.render.border_max_x = (x0 + 0.25) / width, (x1 + 0.25) / width
    sc.render.border_min_y, sc.render.border_max_y = (height - y1 + 0.25) / height, (height - y0 + 0.25) / height


