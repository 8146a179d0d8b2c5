"""The plain HDRI background computed per pixel in numpy (no Blender): camera rays -> equirectangular lookup.

Exact for what Cycles shows where a camera ray hits the world directly when there is no lens effect (no depth of
field, no motion blur): the same direction mapping and bilinear texel interpolation as Cycles' Environment
Texture (equirectangular), the Mapping node's Z rotation and the Background strength. Colour management (view
transform, look, exposure) is applied afterwards by Blender itself, on the composited linear image.
"""
from __future__ import annotations

import numpy as np


def camera_rays(corners_cam: np.ndarray, cam_rot: np.ndarray, width: int, height: int,
                box_xyxy: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """World-space ray directions (h, w, 3) float32 through pixel centres, rows top to bottom.

    corners_cam: camera-space frame corners (tr, br, bl, tl) as Blender's Camera.view_frame returns them (shift
    included); cam_rot: 3x3 camera-to-world rotation. box_xyxy: only these pixels (x0, y0, x1, y1), exclusive ends.
    """
    tr, br, bl, tl = (np.asarray(c, np.float64) for c in corners_cam)
    x0, y0, x1, y1 = box_xyxy or (0, 0, width, height)
    u = ((np.arange(x0, x1, dtype=np.float64) + 0.5) / width).astype(np.float32)
    v = ((np.arange(y0, y1, dtype=np.float64) + 0.5) / height).astype(np.float32)
    # camera-space point of each pixel centre on the frame plane, then rotated into the world
    ex = ((tr - tl) @ cam_rot.T).astype(np.float32)
    ey = ((bl - tl) @ cam_rot.T).astype(np.float32)
    o = (tl @ cam_rot.T).astype(np.float32)
    d = np.empty((len(v), len(u), 3), np.float32)
    for k in range(3):  # per component: a row term plus a column term (float32, no (h, w, 3) float64 temporaries)
        d[..., k] = (o[k] + v * ey[k])[:, None] + (u * ex[k])[None, :]
    d *= 1.0 / np.sqrt(np.einsum("hwc,hwc->hw", d, d))[..., None]
    return d


def rotate_z(d: np.ndarray, angle_rad: float) -> np.ndarray:
    """The Mapping node (type POINT, rotation (0, 0, angle)) applied to directions."""
    c, s = np.float32(np.cos(angle_rad)), np.float32(np.sin(angle_rad))
    x, y = d[..., 0], d[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, d[..., 2]], -1)


def equirect_lookup(env_bottom_up: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bilinear equirectangular lookup, Cycles' convention. env_bottom_up: (H, W, C) float, row 0 = bottom (as
    bpy Image.pixels). u = 0.5 - atan2(y, x) / 2pi (wraps), v = 0.5 + asin(z) / pi; texel centres at (i + 0.5)."""
    h, w = env_bottom_up.shape[:2]
    u = np.float32(0.5) - np.arctan2(d[..., 1], d[..., 0]) * np.float32(1 / (2 * np.pi))
    v = np.float32(0.5) + np.arcsin(np.clip(d[..., 2], -1, 1)) * np.float32(1 / np.pi)
    x = u * np.float32(w) - np.float32(0.5)
    y = v * np.float32(h) - np.float32(0.5)
    x0f, y0f = np.floor(x), np.floor(y)
    fx, fy = (x - x0f)[..., None], (y - y0f)[..., None]
    x0 = x0f.astype(np.int32) % w
    x1 = x0 + 1
    x1[x1 == w] = 0  # wrap around the seam
    y0 = y0f.astype(np.int32)
    y1 = np.minimum(y0 + 1, h - 1)
    np.clip(y0, 0, h - 1, out=y0)
    # flat gathers from a contiguous (h*w, c) table
    flat = np.ascontiguousarray(env_bottom_up, dtype=np.float32).reshape(h * w, -1)
    r0, r1 = y0 * w, y1 * w
    top = flat[r0 + x0]
    top += (flat[r0 + x1] - top) * fx
    bot = flat[r1 + x0]
    bot += (flat[r1 + x1] - bot) * fx
    top += (bot - top) * fy
    return top


def hdri_background(env_bottom_up: np.ndarray, corners_cam, cam_rot, width: int, height: int, rotation_rad: float,
                    strength: float, box_xyxy=None) -> np.ndarray:
    """Linear RGB (h, w, 3) of the world seen through each pixel centre, rows top to bottom."""
    d = rotate_z(camera_rays(corners_cam, cam_rot, width, height, box_xyxy), rotation_rad)
    return equirect_lookup(env_bottom_up[..., :3], d) * np.float32(strength)
