"""The one protocol every model in the suite implements (architecture.md), plus its phase timer."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .prompt import Prompt

PHASES = ("data", "preprocess", "encoder", "decoder", "postprocess")


@runtime_checkable
class Segmenter(Protocol):
    """set_image once per image, then predict any number of prompts on it.

    name            registry name, e.g. "flip-tiny", "sam-b"
    num_parameters  sum of numel over the model's parameters
    weights_id      where the weights came from ("random" marks random init; never report its IoU)
    timings         per-phase seconds of the last set_image + predict (keys from PHASES)
    """

    name: str
    num_parameters: int
    weights_id: str
    timings: dict

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]: ...


class PhaseTimer:
    """Accumulates wall time per phase; synchronises CUDA around each phase when a GPU is in use."""

    def __init__(self, device=None):
        self.sync = None
        if device is not None and str(device).startswith("cuda"):
            import torch

            self.sync = torch.cuda.synchronize
        self.times: dict[str, float] = {}

    def reset(self, *phases: str) -> None:
        if phases:
            for p in phases:
                self.times.pop(p, None)
        else:
            self.times.clear()

    @contextmanager
    def __call__(self, phase: str):
        if self.sync:
            self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                self.sync()
            self.times[phase] = self.times.get(phase, 0.0) + time.perf_counter() - t0


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """RGB uint8 HWC, C-contiguous; grayscale is expanded, RGBA is dropped to RGB, anything else is an error."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 RGB, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected shape (H, W, 3), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])
