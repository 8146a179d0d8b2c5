"""The one protocol every model in the suite implements (docs/architecture.md), plus its phase timer."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .prompt import Prompt

PHASES = ("data", "preprocess", "encoder", "decoder", "postprocess")
# Execution backends a caller may ask a model for (FLIP: flip.ort.select_backend; `python -m benchmark --backend`):
# "auto" lets the model take its fastest one; the one that actually ran is in every record (column `backend`).
BACKENDS = ("auto", "onnxruntime", "torch")


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


def count_parameters(module) -> int:
    """Sum of numel over a torch module's parameters (duck-typed: no torch import here)."""
    return int(sum(p.numel() for p in module.parameters()))


def default_device(device=None) -> str:
    """The device to run on: the caller's choice, else CUDA when present, else the CPU.

    torch is imported only when this is called, so importing segcore stays torch-free."""
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
