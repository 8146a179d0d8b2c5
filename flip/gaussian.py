"""FLIP's own Gaussian conventions: the rot form, model units and the sampler's pixel Gaussian (docs/flip.md §0).

  model  x_m = x_px/128 − W/256, y_m = y_px/128 − H/256
  rot    (μx, μy, s1, s2, a, b): minor/major std and the (mirrored) minor-axis direction

The neutral prompt (segcore.prompt) stores rho; only FLIP needs these conversions.
"""
from __future__ import annotations

import numpy as np

from segcore.prompt import EPS, pixel_moments_from_rho

PER_AXIS = "per-axis"  # the authors' convention (released weights): stds scaled by W/256 and H/256
PIXEL = "pixel"  # exact pixel-space covariance, for models trained with it
CONVENTIONS = (PER_AXIS, PIXEL)


def rot_from_rho(rho: np.ndarray) -> np.ndarray:
    """rho (..., 5) → rot (..., 6), exactly the authors' formula with its clips (docs/flip.md §0)."""
    rho = np.asarray(rho, dtype=np.float64)
    mx, my, vx, vy, vxy = np.moveaxis(rho, -1, 0)
    t = np.sqrt(np.maximum((vx - vy) ** 2 + 4 * vxy * vxy, EPS))
    s1 = np.sqrt(np.maximum((vx + vy) / 2 - t / 2, EPS))
    s2 = np.sqrt(np.maximum((vx + vy) / 2 + t / 2, EPS))
    a0 = 2 * vxy / np.maximum(vx - vy + t, EPS)
    n = np.sqrt(np.maximum(a0 * a0 + 1.0, EPS))
    return np.stack([mx, my, s1, s2, a0 / n, 1.0 / n], axis=-1)



def model_position(rho: np.ndarray, width: int, height: int, convention: str = PER_AXIS) -> np.ndarray:
    """The 6-float position the network takes, in model units.

    per-axis: the authors' conversion (rot in the norm frame, s1·W/256, s2·H/256); exact only for square
    images, but it is what the released weights were trained with (docs/flip.md §0).
    pixel:    rot of the true pixel covariance, converted to model units (1 unit = 128 px).
    """
    if convention == PER_AXIS:
        r = rot_from_rho(rho)
        return np.array([r[0] * width / 256, r[1] * height / 256, r[2] * width / 256, r[3] * height / 256, r[4], r[5]])
    if convention == PIXEL:
        mean, cov = pixel_moments_from_rho(rho, width, height)
        mu_m = mean / 128.0 - np.array([width, height]) / 256.0
        r = rot_from_rho(np.array([mu_m[0], mu_m[1], cov[0, 0], cov[1, 1], cov[0, 1]]) / np.array([1, 1, 128**2, 128**2, 128**2]))
        return r
    raise ValueError(f"unknown Gaussian convention {convention!r}; choose one of {CONVENTIONS}")


def sampler_gaussian(rho: np.ndarray, width: int, height: int, convention: str = PER_AXIS) -> np.ndarray:
    """(μx, μy, s1, s2, a, b) in pixels, as the fovea sampler and the 5σ box use it (no √2 widening).

    It is the model-units position mapped back to pixels, so the patches, the box and the embedding always
    agree on one Gaussian whichever convention is chosen.
    """
    p = model_position(rho, width, height, convention)
    return np.array([(p[0] + width / 256) * 128, (p[1] + height / 256) * 128, p[2] * 128, p[3] * 128, p[4], p[5]])
