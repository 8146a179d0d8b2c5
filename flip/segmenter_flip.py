"""FLIP behind the suite's Segmenter protocol (flip/segmenter.py): flip.create_segmenter(name, ...)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .modeling import count_parameters
from .predictor import FlipPredictor, default_device
from segcore.prompt import Prompt

from .gaussian import PER_AXIS, PIXEL
from .registry import create_model, list_models
from .weights import WEIGHT_SOURCES, load_weights, pretrained, resolve_weights, weights_id_for


class FlipSegmenter:
    """Segmenter protocol: name, num_parameters, weights_id, timings, set_image, predict."""

    def __init__(self, name: str, model, weights_id: str, **predictor_kw):
        self.name = name
        self.model = model
        self.weights_id = weights_id
        self.num_parameters = count_parameters(model)
        self.predictor = FlipPredictor(model, **predictor_kw)

    @property
    def timings(self) -> dict:
        return self.predictor.timings

    @property
    def last_tokens(self) -> list[int]:
        return self.predictor.last_tokens

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        return self.predictor.predict(list(prompts))


def create_segmenter(name: str = "flip-tiny", weights=None, mode: str = "5sigma", device=None, seed: int = 0,
                     convention: str | None = None, **predictor_kw) -> FlipSegmenter:
    """weights: None (first source that has weights: cache, shared reference, download, project hooks),
    "authors" (the same, but only the authors' weights), "random" (seeded random init, weights_id "random"),
    or a path (.ckpt / .onnx / [encoder.onnx, predictor.onnx])."""
    if name not in list_models():
        raise KeyError(f"unknown FLIP model {name!r}; available: {', '.join(list_models())}")
    device = device or default_device()
    if isinstance(weights, str) and weights == "random":
        torch.manual_seed(seed)
        model = create_model(name)
        wid, conv = "random", convention or PIXEL
    elif weights is None or (isinstance(weights, str) and weights == "authors"):
        if weights == "authors":
            found, wid = None, None
            for src in WEIGHT_SOURCES:
                if src.authors and (found := src.locate(name)) is not None:
                    wid = weights_id_for(found)
                    break
            if found is None:
                resolve_weights(name, None)  # raises the explanatory FileNotFoundError
            model = create_model(name)
            load_weights(model, found)
            conv = convention or PER_AXIS
        else:
            model = pretrained(name)
            wid, conv = model.weights_id, convention or model.gaussian_convention
    else:
        paths = weights if isinstance(weights, (list, tuple)) else [weights]
        model = pretrained(name, path=paths if len(paths) > 1 else Path(paths[0]))
        wid, conv = model.weights_id, convention or model.gaussian_convention
    model.eval()
    return FlipSegmenter(name, model, wid, mode=mode, device=device, seed=seed, convention=conv, **predictor_kw)
