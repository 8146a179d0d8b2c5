"""Self-check of the fast render paths against plain Cycles, in a fresh Blender process:

    python -m objascale.blender.verify --width 320 --height 240 --samples 16 [--hdri NAME] [--json OUT]

1. analytic background vs Cycles' render of the empty world (linear values and the saved 8-bit image);
2. Object Index mask rendered fast (target's projected box, emission override) vs the full frame with the real
   materials (must be identical);
3. composite (objects by Cycles on transparent film over the analytic background) vs one full Cycles render.
Prints one JSON object with the errors; the tests assert on it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

CUBE = "".join(f"v {x} {y} {z}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)) + (
    "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=320, help="image width (px)")
    ap.add_argument("--height", type=int, default=240, help="image height (px)")
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples of the reference renders")
    ap.add_argument("--hdri", default="sunset.exr", help="file name of one of the bpy wheel's HDRIs")
    ap.add_argument("--threads", type=int, default=2, help="Cycles threads")
    ap.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)

    import bpy

    from objascale.assets.hdri import builtin_hdri_dir

    from . import base, beauty, importer, masks, scene
    from .background import hdri_background

    W, H = a.width, a.height
    tmp = tempfile.mkdtemp(prefix="objascale-verify-")
    rot_deg, strength = 137.0, 1.3
    sc = scene.reset_scene(a.threads)
    sc.cycles.seed = 7
    img = scene.setup_world(sc, str(builtin_hdri_dir() / a.hdri), rot_deg, strength)
    cam = {"focal_mm": 30.0, "sensor_mm": 36.0, "azimuth_deg": 50.0, "elevation_deg": 35.0}
    co = scene.make_camera(sc, cam, W, H)
    scene.place_camera(co, cam, 6.0)
    co.data.shift_x, co.data.shift_y = 0.08, -0.05
    bpy.context.view_layer.update()
    c = sc.cycles
    c.samples, c.use_adaptive_sampling, c.use_denoising = a.samples, False, False
    # 1. the empty world
    cy_lin = beauty._render_exr_rgba(sc, tmp, "empty")[..., :3]
    cy_png = beauty._render_rgb(sc, tmp, "empty")
    frame = [np.array(v) for v in co.data.view_frame(scene=sc)]
    rot = np.array(co.matrix_world.to_3x3())
    bg = hdri_background(scene.env_pixels(img), frame, rot, W, H, math.radians(rot_deg), strength)
    rel = np.abs(bg - cy_lin) / (np.abs(cy_lin) + 0.02)
    ours_png = beauty.display_rgb(sc, bg, tmp)
    d8 = np.abs(ours_png.astype(int) - cy_png.astype(int))
    res = {"width": W, "height": H, "samples": a.samples, "hdri": a.hdri,
           "background_linear_rel_err_mean": float(rel.mean()), "background_linear_rel_err_p99": float(np.percentile(rel, 99)),
           "background_8bit_abs_err_mean": float(d8.mean()), "background_8bit_abs_err_max": int(d8.max())}
    # 2. a cube (+ a distractor cube partly in front of it): mask in the projected box vs full frame
    obj = Path(tmp) / "cube.obj"
    obj.write_text(CUBE)
    asset = {"id": "verify:cube", "path": str(obj), "rotation": []}
    target, _ = importer.import_object(sc, asset, base.TARGET_INDEX, lambda p: p)
    scene.set_pose(target, {"yaw_deg": 30.0, "tilt_x_deg": 10.0, "tilt_y_deg": -5.0})
    occ, _ = importer.import_object(sc, dict(asset, id="verify:occluder"), base.TARGET_INDEX + 1, lambda p: p)
    scene.set_pose(occ, {"yaw_deg": 10.0, "tilt_x_deg": 0.0, "tilt_y_deg": 0.0},
               location=tuple(co.location * 0.4), scale=0.3)
    bpy.context.view_layer.update()
    full_idx = masks.render_index(sc, W, H, tmp, fast_shading=False)  # reference: real materials, full frame
    box = masks.projected_box(sc, co, base.TARGET_INDEX, W, H, margin=2)
    box_idx = masks.render_index(sc, W, H, tmp, box_xyxy=box)  # fast: shading override + box
    tgt = full_idx == base.TARGET_INDEX
    res.update(mask_box_xyxy=list(box) if box else None, mask_target_px=int(tgt.sum()),
               mask_occluder_px=int((full_idx == base.TARGET_INDEX + 1).sum()),
               mask_box_equal=bool(np.array_equal(tgt, box_idx == base.TARGET_INDEX)))
    # 3. composite vs one full Cycles render (same samples, no denoiser: only sampling noise differs)
    cfg = {"adaptive_threshold": 0.0, "max_bounces": 4, "denoiser": "none", "samples_min": a.samples}
    beauty.configure_beauty(sc, a.samples, cfg)
    c.use_adaptive_sampling = False
    full = beauty._render_rgb(sc, tmp, "full")
    ys, xs = np.nonzero(full_idx > 0)
    region = (max(0, xs.min() - 4), max(0, ys.min() - 4), min(W, xs.max() + 5), min(H, ys.max() + 5))
    comp, _ = beauty.render_composite(sc, W, H, a.samples, cfg, tuple(int(v) for v in region), bg, tmp)
    dc = np.abs(comp.astype(int) - full.astype(int))
    inside = np.zeros((H, W), bool)
    inside[region[1]:region[3], region[0]:region[2]] = True
    res.update(composite_abs_err_mean=float(dc.mean()), composite_abs_err_mean_region=float(dc[inside].mean()),
               composite_abs_err_mean_outside=float(dc[~inside].mean()),
               objects_px=int((full_idx > 0).sum()))
    print("@@VERIFY " + json.dumps(res), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
