"""FLIP's onnxruntime runtime, beside the torch model (flip/modeling/ stays plain torch modules):

  graphs.py    graph-friendly forms of the modules and their export (torch.onnx)
  sessions.py  onnxruntime sessions per model state (built on first use, rebuilt when a weight changes)
  run.py       encode / encode_objects / decode through the graphs, the decoder's run sizes and thread split

Who runs which backend is decided once, by whoever runs the model (FlipPredictor(backend=...), the registry and
`python -m benchmark --backend` pass it): `select_backend` turns "auto" | "onnxruntime" | "torch" into the backend
that will run, and the predictor records it. Nothing here reads an environment variable or a model attribute.
"""
from __future__ import annotations

from segcore.segmenter import BACKENDS

from .graphs import SUPPORTED_PATCH_SIZES

__all__ = ["BACKENDS", "select_backend", "unsupported_reason", "onnxruntime_version"]


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, or None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def unsupported_reason(model, device, kernel: str = "auto") -> str | None:
    """Why onnxruntime cannot run this model as asked, or None when it can: CPU, float32, attention kernel "auto"
    (an explicit torch kernel is honoured), patch sizes the graphs know, onnxruntime installed."""
    import torch

    if torch.device(device).type != "cpu":
        return f"device {device} (the graphs run on the CPU)"
    if kernel != "auto":
        return f"attention kernel {kernel!r} is a torch kernel"
    if not set(model.patch_sizes) <= set(SUPPORTED_PATCH_SIZES):
        return f"patch sizes {tuple(model.patch_sizes)} (the graphs know {SUPPORTED_PATCH_SIZES})"
    if model.sparsify.registers.dtype != torch.float32:
        return f"weights in {model.sparsify.registers.dtype} (the graphs are float32)"
    if onnxruntime_version() is None:
        return "onnxruntime is not installed"
    return None


def select_backend(requested: str, model, device, kernel: str = "auto") -> str:
    """The backend that will run: "onnxruntime" or "torch". "auto" takes onnxruntime wherever it can run the model
    (measured faster at every size FLIP produces: docs/speed.md); "onnxruntime" that cannot run raises ValueError."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown FLIP backend {requested!r}; choose one of {BACKENDS}")
    if requested == "torch":
        return "torch"
    why = unsupported_reason(model, device, kernel)
    if why is None:
        return "onnxruntime"
    if requested == "onnxruntime":
        raise ValueError(f"backend 'onnxruntime' cannot run this model: {why}")
    return "torch"
