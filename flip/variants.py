"""FLIP architectures by name (the paper's four variants and its patch-size ablations): flip.create_model(name).

Which weights go with a name is the suite registry's business (flip/segmenter.py, segcore/registry.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .modeling.config import FlipConfig

if TYPE_CHECKING:
    from .modeling.flip import FLIP

_SMALL = dict(channels=128, layers=5, head_size=32)
MODEL_CONFIGS: dict[str, FlipConfig] = {
    "flip-tiny": FlipConfig(channels=64, layers=3, head_size=16),
    "flip-small": FlipConfig(**_SMALL),
    "flip-middle": FlipConfig(channels=256, layers=8, head_size=32),
    "flip-large": FlipConfig(channels=512, layers=24, head_size=32),
    # Paper ablations (patch-size sets), on FLIP-Small
    "flip-small-maxpatch4": FlipConfig(**_SMALL, patch_sizes=(1, 2, 4)),
    "flip-small-maxpatch64": FlipConfig(**_SMALL, patch_sizes=(1, 2, 4, 8, 16, 32, 64)),
    "flip-small-minpatch4": FlipConfig(**_SMALL, patch_sizes=(4, 8, 16)),
}


def list_architectures() -> list[str]:
    """Architecture names (registry names add the mode and the weights tag: segcore.registry.list_names)."""
    return sorted(MODEL_CONFIGS)


def get_config(name: str, **overrides) -> FlipConfig:
    if name not in MODEL_CONFIGS:
        raise KeyError(f"unknown FLIP model {name!r}; available: {', '.join(list_architectures())}")
    cfg = MODEL_CONFIGS[name]
    return cfg.with_(**overrides) if overrides else cfg


def create_model(name: str, **overrides) -> FLIP:
    """Build a randomly initialised FLIP variant. overrides: FlipConfig fields (e.g. pos_emb_all_layers=False)."""
    from .modeling.flip import FLIP

    model = FLIP(get_config(name, **overrides))
    model.name = name
    return model


def register_model(name: str, cfg: FlipConfig) -> None:
    MODEL_CONFIGS[name] = cfg


