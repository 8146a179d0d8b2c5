"""FLIP's entries in the suite registry: names, tags, weight files and the rule each set of weights was trained with.

Data only, torch-free (`python -m benchmark --list-models` reads it without loading torch); each entry's builder
loads the model on first use (flip/segmenter.py).
Names: `flip-<variant>[-h].<tag>`; `-h` = hierarchical refinement (the paper's FLIPh rows), else the 5σ box.
Tags: `authors` (the published weights; Gaussian per-axis, the authors' patch sampling) and, for FLIP-Tiny,
`project` (trained by this project; flip/checkpoints/MODEL_CARD.md). The rule the weights were trained with
travels with them: the Gaussian convention and the sampler rule come from the weights, never from the caller.
"""
from __future__ import annotations

from pathlib import Path

from segcore import hub, registry
from segcore.registry import HIERARCHICAL_SUFFIX

from .gaussian import PER_AXIS, PIXEL
from .variants import MODEL_CONFIGS

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


def published_files() -> list[hub.WeightFile]:
    return [f for v in ("tiny", "small", "middle", "large") for s in authors_files(v) for f in s]


BUILDER = "flip.segmenter:build_segmenter"  # loaded by the registry when a FLIP model is built (torch, the model)


def register_all() -> None:
    for arch, cfg in MODEL_CONFIGS.items():
        variant = arch.replace("flip-", "", 1)
        for mode, suffix, what in (("5sigma", "", "5σ box"), ("hierarchical", HIERARCHICAL_SUFFIX, "hierarchical refinement")):
            common = dict(builder=BUILDER, mode=mode, extra={"arch": arch})
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


register_all()
