"""Model registry: one `create(name)` for FLIP variants, baselines and the harness's own reference models.

The harness only ever sees a Segmenter (flip/segmenter.py); it never asks which model it holds.
  flip-*        -> flip.create_segmenter(name, weights=..., mode=..., device=..., seed=...)
  noop          -> empty masks, no work: measures the harness's own overhead
  oracle-box    -> fills the prompt's ground-truth box: a model-free reference with real IoU numbers
  anything else -> baselines.create(name, weights=...)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from segcore.prompt import Prompt
from segcore.image import check_image
from segcore.segmenter import PHASES, PhaseTimer

NO_IOU_WEIGHTS = ("random", "none")  # weights ids whose IoU is meaningless: reported as n/a, never a number
_LOCAL: dict[str, Callable[..., object]] = {}


class ModelError(ValueError):
    """A model that cannot be built (unknown name, missing weights): a configuration error."""


def register(name: str):
    def deco(fn):
        _LOCAL[name] = fn
        return fn

    return deco


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


@register("noop")
def _noop(weights=None, **_):
    return NoopSegmenter()


@register("oracle-box")
def _oracle_box(weights=None, **_):
    return OracleBoxSegmenter()


def available() -> list[str]:
    names = sorted(_LOCAL)
    try:
        import flip

        names += list(getattr(flip, "list_models", lambda: [])())
    except Exception:
        pass
    try:
        import baselines

        names += list(getattr(baselines, "list_models", lambda: [])())
    except Exception:
        pass
    return names


HIERARCHICAL_SUFFIX = "-h"  # flip-tiny-h = FLIP-Tiny with hierarchical refinement (the paper's FLIPh rows)


def record_name(name: str, mode: str = "5sigma") -> str:
    """The model name records carry: hierarchical FLIP runs are told apart from 5σ ones by the '-h' suffix."""
    if name.startswith("flip-") and mode == "hierarchical" and not name.endswith(HIERARCHICAL_SUFFIX):
        return name + HIERARCHICAL_SUFFIX
    return name


def create(name: str, weights=None, mode: str = "5sigma", device=None, seed: int = 0):
    """Build a Segmenter by registry name. Raises ModelError with the cause (unknown name, missing weights...)."""
    if name.startswith("flip-") and name.endswith(HIERARCHICAL_SUFFIX):
        name, mode = name[: -len(HIERARCHICAL_SUFFIX)], "hierarchical"
    if name in _LOCAL:
        model = _LOCAL[name](weights=weights)
    elif name.startswith("flip-"):
        try:
            import flip

            factory = flip.create_segmenter
        except (ImportError, AttributeError) as e:
            raise ModelError(f"{name}: flip.create_segmenter is not available ({e})") from None
        try:
            model = factory(name, weights=weights, mode=mode, device=device, seed=seed)
        except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
            raise ModelError(f"{name}: cannot build the model: {e}") from None
    else:
        try:
            import baselines

            factory = baselines.create
        except (ImportError, AttributeError) as e:
            raise ModelError(f"unknown model {name!r} and baselines.create is not available ({e})") from None
        try:
            model = factory(name, weights=weights)
        except (FileNotFoundError, KeyError, ValueError, RuntimeError, ImportError) as e:
            raise ModelError(f"{name}: cannot build the model: {e}") from None
    for attr in ("name", "num_parameters", "weights_id", "set_image", "predict"):
        if not hasattr(model, attr):
            raise ModelError(f"{name}: the built object has no {attr!r}; it does not implement the Segmenter protocol")
    return model


def iou_is_meaningful(weights_id: str) -> bool:
    return str(weights_id) not in NO_IOU_WEIGHTS


__all__ = ["create", "register", "available", "ModelError", "NoopSegmenter", "OracleBoxSegmenter", "PHASES",
           "iou_is_meaningful", "check_image"]
