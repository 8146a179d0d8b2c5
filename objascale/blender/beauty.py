"""Beauty renders: Cycles settings, full or region renders, and the composite of the objects' region (transparent
film) over the analytic HDRI background through Blender's own colour management."""
from __future__ import annotations

import os
import time

import bpy
import numpy as np

from objascale.plan import capped_samples

from .scene import set_border

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
    set_border(sc, width, height, region_xyxy)
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
