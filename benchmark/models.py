"""The harness's view of the one registry (segcore/registry.py): every family imported, names resolved, and
two model-free references registered here:
  noop          empty masks, no work: measures the harness's own overhead
  oracle-box    fills the prompt's ground-truth box: a model-free reference with real IoU numbers
The harness only ever sees a Segmenter (segcore.segmenter); it never asks which model it holds.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from segcore.prompt import Prompt
from segcore import registry
from segcore.image import check_image
from segcore.registry import ModelError
from segcore.segmenter import PHASES, PhaseTimer

NO_IOU_WEIGHTS = ("random", "none")  # weights ids whose IoU is meaningless: reported as n/a, never a number


class NoopSegmenter:
    """Returns empty masks without looking at the image: the harness's cost with a model that costs nothing."""

    name = "noop"
    num_parameters = 0
    weights_id = "none"

    def __init__(self):
        self.timings: dict = {}
        self._shape = (0, 0)
        self._timer = PhaseTimer()

    def set_image(self, image: np.ndarray) -> None:
        self._timer.reset()
        with self._timer("preprocess"):
            self._shape = np.asarray(image).shape[:2]
        self.timings = dict(self._timer.times)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        with self._timer("decoder"):
            out = [np.zeros(self._shape, dtype=bool) for _ in prompts]
        self.timings = dict(self._timer.times)
        return out


class OracleBoxSegmenter(NoopSegmenter):
    """Predicts the filled ground-truth box of each prompt (what a box prompt alone gives)."""

    name = "oracle-box"
    weights_id = "oracle"

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        out = []
        with self._timer("decoder"):
            for p in prompts:
                m = np.zeros(self._shape, dtype=bool)
                x0, y0, x1, y1 = np.round(p.box_xyxy).astype(int)
                m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
                out.append(m)
        self.timings = dict(self._timer.times)
        return out


def _local(cls):
    def builder(entry, weights=None, **_):
        return cls()

    return builder


registry.register(registry.ModelEntry("noop", "", _local(NoopSegmenter),
                                      description="empty masks, no work: the harness's own overhead (IoU n/a)"))
registry.register(registry.ModelEntry("oracle-box", "", _local(OracleBoxSegmenter),
                                      description="fills the ground-truth box of each prompt: what a box alone gives"))


def _families() -> None:
    """Import the model families so that their registry entries exist (each registers on import; torch-free:
    the builders load torch and the models when a model is built)."""
    import flip  # noqa: F401

    try:
        import baselines  # noqa: F401
    except ImportError:  # the baseline packages are an optional extra
        pass


def names(with_tags: bool = True) -> list[str]:
    """Every registered model name, all families imported."""
    _families()
    return registry.list_models(with_tags)


def resolve_name(name: str, mode: str | None = None, download: bool = False) -> str:
    """Full registry name for a CLI name; `--mode hierarchical` turns flip names into their `-h` models."""
    return resolution(name, mode=mode, download=download).name


def resolution(name: str, weights=None, mode: str | None = None, download: bool = False) -> registry.Resolution:
    """Which weights a CLI name (with --weights / --mode) means here and why; `.line()` is what a run prints."""
    requested = name.strip()
    label = requested + (f" --weights {weights}" if weights is not None else "")  # the mode shows in the -h name
    name, weights = registry.weights_as_tag(requested, weights)
    _families()
    r = registry.resolve(registry.with_mode(name, mode), download=download)
    if weights is None:
        return registry.Resolution(label, r.entry, r.files, r.reason)
    if not r.entry.file_sets() and not r.entry.tag:  # model-free references take no weights
        return registry.Resolution(label, r.entry, (), r.reason + "; --weights does not apply")
    if str(weights) == "random":
        return registry.Resolution(label, r.entry, (), "seeded random init: timing only, IoU n/a")
    return registry.Resolution(label, r.entry, (weights,), f"weights file given: {weights}")


def create(name: str, weights=None, mode: str | None = None, device=None, seed: int = 0, download: bool | None = None,
           backend: str | None = None):
    """Build a Segmenter by registry name. Raises ModelError with the cause (unknown name, missing weights...).
    backend: "auto" | "onnxruntime" | "torch" (segcore.segmenter.BACKENDS), passed to the model's builder."""
    explicit_file = _is_weights_file(weights)
    name, weights = registry.weights_as_tag(name, weights)  # --weights project / authors / official: a tag
    try:
        from segcore.hub import downloads_allowed

        full = resolve_name(name, mode, download=weights is None and downloads_allowed(download))
        kw = {k: v for k, v in (("download", download), ("backend", backend)) if v is not None}
        model = registry.create(full, weights=weights, device=device, seed=seed, **kw)
    except registry.ModelError:
        raise
    except (FileNotFoundError, KeyError, ValueError, RuntimeError, ImportError) as e:
        raise ModelError(f"{name}: cannot build the model: {e}") from None
    for attr in ("name", "num_parameters", "weights_id", "set_image", "predict"):
        if not hasattr(model, attr):
            raise ModelError(f"{name}: the built object has no {attr!r}; it does not implement the Segmenter protocol")
    if explicit_file:
        relabel_by_weights(model)
    return model


def _is_weights_file(weights) -> bool:
    return isinstance(weights, (str, os.PathLike)) and str(weights) != "random" and os.path.isfile(weights)


def relabel_by_weights(model) -> None:
    """A model built from a weights file is named by what the file is (the source in its weights id: authors or
    official only when its digest equals the published file's, project, else file), never by the registry tag it
    was looked up under: `--model flip-tiny --weights mine.onnx` runs flip-tiny.file, not flip-tiny.authors."""
    source = str(model.weights_id).split(":", 1)[0] if ":" in str(model.weights_id) else None
    base, tag = registry.split_name(str(model.name))
    if source and tag != source:
        try:
            model.name = f"{base}.{source}"
        except AttributeError:  # a read-only name: the weights id still says which file ran
            pass


def iou_is_meaningful(weights_id: str) -> bool:
    return str(weights_id) not in NO_IOU_WEIGHTS


__all__ = ["create", "resolution", "resolve_name", "names", "ModelError", "NoopSegmenter", "OracleBoxSegmenter", "PHASES",
           "iou_is_meaningful", "check_image"]
