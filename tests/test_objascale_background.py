"""Fast render paths vs plain Cycles: analytic HDRI background, mask in the projected box, composite.

The numpy part (ray directions, equirectangular convention) runs without Blender; the comparison with Cycles runs
`python -m objascale.blender.verify` at 160x120 px in a fresh process (a few seconds)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from objascale.blender.background import camera_rays, equirect_lookup, rotate_z

ROOT = Path(__file__).resolve().parent.parent


def test_equirect_convention_axes():
    # a 4x8 map whose texel values are their own (row from bottom, column) indices: each axis lands where Cycles puts it
    h, w = 4, 8
    env = np.zeros((h, w, 3), np.float32)
    env[..., 0] = np.arange(w)[None, :]
    env[..., 1] = np.arange(h)[:, None]
    d = np.array([[[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)
    got = equirect_lookup(env, d)
    # -X looks at u = 0.5 - atan2(0, -1)/2pi = 0 -> x = -0.5: the wrap between the last and first column
    assert got[0, 0, 0] == pytest.approx((w - 1) * 0.5 + 0 * 0.5)
    # +Y: u = 0.25 -> x = 1.5, between columns 1 and 2; the horizon v = 0.5 -> y = 1.5, between rows 1 and 2
    assert got[0, 1, 0] == pytest.approx(1.5) and got[0, 1, 1] == pytest.approx(1.5)
    # straight up: the top row (clamped, no wrap over the pole)
    assert got[0, 2, 1] == pytest.approx(h - 1)
    # the Mapping node's Z rotation turns +X into +Y
    assert np.allclose(rotate_z(np.array([[1.0, 0.0, 0.0]], np.float32), math.pi / 2), [[0.0, 1.0, 0.0]], atol=1e-6)


def test_camera_rays_through_pixel_centres():
    # camera looking down -Z, frame at z = -1 spanning [-1, 1] x [-0.5, 0.5] (tr, br, bl, tl)
    corners = [np.array(v, float) for v in ((1, 0.5, -1), (1, -0.5, -1), (-1, -0.5, -1), (-1, 0.5, -1))]
    d = camera_rays(corners, np.eye(3), 4, 2)
    assert d.shape == (2, 4, 3) and np.allclose(np.linalg.norm(d, axis=-1), 1, atol=1e-6)
    p = d / -d[..., 2:3]  # back onto the z = -1 plane
    assert np.allclose(p[0, 0, :2], [-0.75, 0.25]) and np.allclose(p[1, 3, :2], [0.75, -0.25])
    sub = camera_rays(corners, np.eye(3), 4, 2, box_xyxy=(1, 1, 3, 2))
    assert np.allclose(sub, d[1:2, 1:3])


@pytest.mark.blender
def test_fast_paths_match_cycles(tmp_path):
    pytest.importorskip("bpy", reason="bpy (objascale extra) not installed")
    pytest.importorskip("OpenEXR", reason="OpenEXR (objascale extra) not installed")
    out = tmp_path / "verify.json"
    proc = subprocess.run([sys.executable, "-m", "objascale.blender.verify", "--width", "240", "--height", "180",
                           "--samples", "8", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads(out.read_text())
    # background: same values as Cycles up to its pixel filter; 8-bit output differs by dithering (~0.3) only
    assert r["background_linear_rel_err_mean"] < 0.02 and r["background_8bit_abs_err_mean"] < 1.0
    # the mask in the target's projected box is the full-frame mask, with an occluder in front of the target
    assert r["mask_box_equal"] and r["mask_target_px"] > 100 and r["mask_occluder_px"] > 0
    # composite vs one full render: sampling noise and dithering only, everywhere
    assert r["composite_abs_err_mean_region"] < 3.0 and r["composite_abs_err_mean_outside"] < 1.0
