"""Shared helpers for the FLIP model tests: a synthetic image and sampler-free patch sets."""
from __future__ import annotations

import numpy as np

SIZES = (1, 2, 4, 8, 16)


def synthetic_image(h=256, w=320):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.2 * (xx + yy) / (w + h)], -1)
    img[((xx - 150) / 60.0) ** 2 + ((yy - 120) / 35.0) ** 2 < 1] = [0.9, 0.2, 0.1]
    img[((xx - 260) / 12.0) ** 2 + ((yy - 60) / 20.0) ** 2 < 1] = [0.1, 0.3, 0.9]
    return (img * 255).astype(np.uint8)


def allocation(sigma_px, n=512, c=1.44, sizes=SIZES):
    """docs/flip.md §3.2 counts for an isotropic σ (before the √2 widening)."""
    s = sigma_px * np.sqrt(2)
    area = 2 * np.pi * s * s
    out, left = [0] * len(sizes), n
    for i in range(len(sizes) - 1, -1, -1):
        k = max(0, min(left, int(area * c / sizes[i] ** 2)))
        out[i], left = k, left - k
    return out


def crop_patches(img, mu, sigma_px, counts, rng, sizes=SIZES):
    """Integer-aligned crops around a Gaussian: (patches HWC uint8 per size, coords model units per size)."""
    h, w = img.shape[:2]
    P, C = [], []
    for p, n in zip(sizes, counts):
        ps, cs, tries = [], [], 0
        while len(cs) < n and tries < 50 * n + 50:
            tries += 1
            x, y = mu + rng.normal(size=2) * sigma_px * np.sqrt(2)
            x0, y0 = int(round(x - p / 2)), int(round(y - p / 2))
            if x0 < 0 or y0 < 0 or x0 + p >= w - 1 or y0 + p >= h - 1:
                continue
            ps.append(img[y0:y0 + p, x0:x0 + p])
            cs.append(((x0 + p / 2) / 128 - w / 256, (y0 + p / 2) / 128 - h / 256))
        P.append(np.array(ps, np.uint8).reshape(len(ps), p, p, 3))
        C.append(np.array(cs, np.float32).reshape(len(cs), 2))
    return P, C


def position(mu, s1, s2, a, b, w, h):
    return np.array([mu[0] / 128 - w / 256, mu[1] / 128 - h / 256, s1 / 128, s2 / 128, a, b], np.float32)
