"""Small shared fixtures for the baselines tests: a synthetic image and prompts from hand-made masks."""
from __future__ import annotations

import numpy as np

from segcore.prompt import Prompt

H, W = 72, 96


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def masks() -> list[np.ndarray]:
    a = np.zeros((H, W), bool)
    a[10:40, 20:70] = True
    b = np.zeros((H, W), bool)
    b[50:72, 0:12] = True  # touches the image border
    c = np.zeros((H, W), bool)
    c[5, 5] = True  # a single pixel
    return [a, b, c]


def prompts() -> list[Prompt]:
    return [Prompt.from_mask(m) for m in masks()]
