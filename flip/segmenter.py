"""FLIP behind the suite's Segmenter protocol (segcore.segmenter): the builders of FLIP's registry entries
(flip/entries.py: names, tags, weight files and rules). The rule the weights were trained with travels with them:
the Gaussian convention and the sampler rule come from the weights, never from the caller.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from segcore import hub, registry
from segcore.prompt import Prompt
from segcore.segmenter import count_parameters

from .entries import AUTHORS_RULE, published_files
from .gaussian import PIXEL
from .ort import onnxruntime_version
from .predictor import FlipPredictor
from .variants import create_model
from .weights import load_weights


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

    def settings(self) -> dict:
        """What produced this model's numbers: recorded in run.json and the records (the backend that runs, with
        the versions of both libraries: the two backends' masks differ in up to ~0.1 % of a mask's pixels)."""
        p = self.predictor
        return {"mode": p.mode, "convention": p.convention, "sampler_compat": p.sampler_compat, "tau": p.tau,
                "coverage": p.coverage, "num_tokens": p.num_tokens, "seed": p.seed, "backend": p.backend,
                "onnxruntime_version": onnxruntime_version() or "", "torch_version": torch.__version__}

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        return self.predictor.predict(list(prompts))


def load_flip(name: str, weights=None, device=None, download: bool | None = None, seed: int = 0):
    """(nn.Module in eval mode, registry entry). weights: None (the tag's files), "random", or a path.
    Sets model.weights_id, model.gaussian_convention and model.sampler_compat from the weights."""
    entry = registry.get(name)
    arch = entry.extra["arch"]
    if weights is None and entry.tag == hub.RANDOM:  # architectures without published weights
        weights = hub.RANDOM
    if isinstance(weights, str) and weights == hub.RANDOM:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)
            model = create_model(arch)
        wid, rule = hub.RANDOM, dict(convention=entry.convention or PIXEL, sampler_compat=entry.sampler_compat or "exact")
    else:
        model = create_model(arch)
        if weights is None:
            if not entry.file_sets():
                raise registry.ModelError(f"{entry.name}: no trained weights are published for this architecture; "
                                          "pass a weights file, or weights='random' for timing")
            paths = hub.resolve_any(entry.name, entry.file_sets(), download=download)  # verified; fetched if allowed
        else:
            paths = hub.resolve(entry.name, (), path=weights)
        meta = load_weights(model, paths if len(paths) > 1 else paths[0])
        if meta is not None:  # a project-trained file carries its own rule
            rule = dict(convention=meta.get("convention", PIXEL), sampler_compat=meta.get("sampler_compat", "exact"))
        elif weights is None:
            rule = dict(convention=entry.convention, sampler_compat=entry.sampler_compat)
        else:  # an explicit authors'-format file (.ckpt / .onnx)
            rule = dict(AUTHORS_RULE)
        wid = hub.weights_id(paths, published_files(), project=meta is not None)
        model.weights_paths = [str(p) for p in paths]  # provenance of models trained from these weights
    model.weights_id = wid
    model.gaussian_convention = rule["convention"]
    model.sampler_compat = rule["sampler_compat"]
    model.eval()
    if device is not None:
        model.to(device)
    return model, entry


def pretrained(name: str = "flip-tiny", path=None, device=None, download: bool | None = None):
    """A FLIP nn.Module with trained weights, by registry name (`flip-tiny`, `flip-tiny.authors`,
    `flip-tiny.project`) or from an explicit file. Sets model.weights_id, model.gaussian_convention and
    model.sampler_compat from the weights."""
    model, _ = load_flip(name, weights=path, device=device, download=download)
    return model


def build_segmenter(entry: registry.ModelEntry, weights=None, device=None, seed: int = 0, download: bool | None = None,
                    convention: str | None = None, backend: str | None = None, **predictor_kw) -> FlipSegmenter:
    """The builder of every FLIP registry entry. backend: "auto" (default) | "onnxruntime" | "torch"."""
    model, _ = load_flip(entry.name, weights=weights, device=device, download=download, seed=seed)
    from segcore.segmenter import default_device

    return FlipSegmenter(entry.name, model, model.weights_id, mode=entry.mode, device=default_device(device), seed=seed,
                         convention=convention or model.gaussian_convention, backend=backend or "auto", **predictor_kw)


def create_segmenter(name: str = "flip-tiny", weights=None, mode: str | None = None, device=None, seed: int = 0,
                     **kwargs) -> FlipSegmenter:
    """Thin entry point over the registry. `mode="hierarchical"` is the same as the `-h` name."""
    if mode not in (None, "5sigma", "hierarchical"):
        raise ValueError(f"unknown mode {mode!r}; choose 5sigma or hierarchical")
    if not registry.split_name(name)[0].startswith("flip-"):
        raise registry.ModelError(f"{name!r} is not a FLIP model; FLIP models: "
                                  + ", ".join(n for n in registry.list_models() if n.startswith("flip-")))
    return registry.create(registry.with_mode(name, mode), weights=weights, device=device, seed=seed, **kwargs)
