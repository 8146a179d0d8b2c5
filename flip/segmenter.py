"""FLIP behind the suite's Segmenter protocol (segcore.segmenter), and FLIP's entries in the one registry.

Names: `flip-<variant>[-h].<tag>`; `-h` = hierarchical refinement (the paper's FLIPh rows), else the 5σ box.
Tags: `authors` (the published weights; Gaussian per-axis, the authors' patch sampling) and, for FLIP-Tiny,
`project` (trained by this project; flip/checkpoints/MODEL_CARD.md). The rule the weights were trained with
travels with them: the Gaussian convention and the sampler rule come from the weights, never from the caller.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from segcore import hub, registry
from segcore.prompt import Prompt
from segcore.segmenter import count_parameters

from .gaussian import PER_AXIS, PIXEL
from .predictor import FlipPredictor
from .variants import MODEL_CONFIGS, create_model
from .weights import load_weights

HIERARCHICAL = "-h"
AUTHORS_REPO = "https://github.com/CognitiveModeling/FLIP"
PUBLISHED_ONNX_URL = "https://manuel-traub.de/onnx/flip-{part}-{variant}.onnx"
# the Lightning checkpoints the authors' README links ("Checkpoints" column): Nextcloud public shares, whose
# /download address serves the shared file; no digest is published, so they are trusted on first use
CHECKPOINT_SHARES = {"tiny": "YPdFxPHsTGEkNwz", "small": "Zj3xDBXrZcSMtoy", "middle": "Cx4kTMbRrD5DCmt",
                     "large": "57NXrqrxmzjxzoX"}
CHECKPOINT_URL = "https://nc.mlcloud.uni-tuebingen.de/index.php/s/{share}/download"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
# published digests (sha256 of the files the authors link from their README)
PUBLISHED_SHA256 = {
    "flip-tiny-fused.onnx": "ef53c2774528f23bba55864809f79ad75e493af07b0d25c1987e86f1b3e6d6a5",
}
AUTHORS_RULE = dict(convention=PER_AXIS, sampler_compat="authors")


def authors_files(variant: str) -> tuple[tuple[hub.WeightFile, ...], ...]:
    """File sets that carry the authors' weights of one variant, in the order they are tried."""
    sets = []
    if variant == "tiny":  # their docs/flipencoder.onnx (fused encoder + predictor), cached as flip-tiny-fused.onnx
        sets.append((hub.WeightFile("flip-tiny-fused.onnx", "flip", "authors", PUBLISHED_SHA256["flip-tiny-fused.onnx"],
                                    f"{AUTHORS_REPO}/raw/59375b6/docs/flipencoder.onnx"),))
    pair = tuple(hub.WeightFile(f"flip-{part}-{variant}.onnx", "flip", "authors",
                                PUBLISHED_SHA256.get(f"flip-{part}-{variant}.onnx"),
                                PUBLISHED_ONNX_URL.format(part=part, variant=variant))
                 for part in ("encoder", "predictor"))
    sets.append(pair)
    sets.append((hub.WeightFile(f"flip-{variant}.ckpt", "flip", "authors", None,
                                CHECKPOINT_URL.format(share=CHECKPOINT_SHARES[variant])),))
    return tuple(sets)


PROJECT_TINY = hub.WeightFile("flip-tiny-objascale.pt", "flip", "project", None, None,
                              local=(lambda: CHECKPOINT_DIR / "flip-tiny-objascale.pt",))
PROJECT_RULE = dict(convention=PIXEL, sampler_compat="exact")  # what the committed file was trained with


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
        """What produced this model's numbers: recorded in run.json and the records."""
        p = self.predictor
        return {"mode": p.mode, "convention": p.convention, "sampler_compat": p.sampler_compat, "tau": p.tau,
                "coverage": p.coverage, "num_tokens": p.num_tokens, "seed": p.seed}

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        return self.predictor.predict(list(prompts))


def _published() -> list[hub.WeightFile]:
    return [f for v in ("tiny", "small", "middle", "large") for s in authors_files(v) for f in s]


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
        wid = hub.weights_id(paths, _published(), project=meta is not None)
    model.weights_id = wid
    model.gaussian_convention = rule["convention"]
    model.sampler_compat = rule["sampler_compat"]
    model.eval()
    if device is not None:
        model.to(device)
    return model, entry


def _build(entry: registry.ModelEntry, weights=None, device=None, seed: int = 0, download: bool | None = None,
           convention: str | None = None, **predictor_kw) -> FlipSegmenter:
    model, _ = load_flip(entry.name, weights=weights, device=device, download=download, seed=seed)
    from segcore.segmenter import default_device

    return FlipSegmenter(entry.name, model, model.weights_id, mode=entry.mode, device=default_device(device), seed=seed,
                         convention=convention or model.gaussian_convention, **predictor_kw)


def create_segmenter(name: str = "flip-tiny", weights=None, mode: str | None = None, device=None, seed: int = 0,
                     **kwargs) -> FlipSegmenter:
    """Thin entry point over the registry. `mode="hierarchical"` is the same as the `-h` name."""
    model, tag = registry.split_name(name)
    if mode == "hierarchical" and not model.endswith(HIERARCHICAL):
        model += HIERARCHICAL
    elif mode not in (None, "5sigma", "hierarchical"):
        raise ValueError(f"unknown mode {mode!r}; choose 5sigma or hierarchical")
    if not model.startswith("flip-"):
        raise registry.ModelError(f"{name!r} is not a FLIP model; FLIP models: "
                                  + ", ".join(n for n in registry.list_models() if n.startswith("flip-")))
    return registry.create(model + (f".{tag}" if tag else ""), weights=weights, device=device, seed=seed, **kwargs)


def _register_all() -> None:
    for arch, cfg in MODEL_CONFIGS.items():
        variant = arch.replace("flip-", "", 1)
        for mode, suffix, what in (("5sigma", "", "5σ box"), ("hierarchical", HIERARCHICAL, "hierarchical refinement")):
            common = dict(builder=_build, mode=mode, extra={"arch": arch})
            if variant in ("tiny", "small", "middle", "large"):
                sets = authors_files(variant)
                registry.register(registry.ModelEntry(
                    arch + suffix, "authors", weights=sets[0], alternatives=sets[1:], **AUTHORS_RULE, **common,
                    description=f"FLIP-{variant.title()}, {what}, the authors' published weights"))
                if variant == "tiny":
                    registry.register(registry.ModelEntry(
                        arch + suffix, "project", weights=(PROJECT_TINY,), **PROJECT_RULE, **common,
                        description=f"FLIP-Tiny, {what}, trained by this project on ObjaScale (flip/checkpoints)"))
            else:  # the paper's patch-size ablations: architectures without published weights
                registry.register(registry.ModelEntry(
                    arch + suffix, "random", convention=PIXEL, sampler_compat="exact", **common,
                    description=f"{arch} ablation architecture, {what}, no published weights (weights='random' or a file)"))


_register_all()
