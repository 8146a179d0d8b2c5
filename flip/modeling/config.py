"""FLIP variant configuration (docs/flip.md §1)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class FlipConfig:
    channels: int = 64
    layers: int = 3
    head_size: int = 16
    num_registers: int = 8
    patch_sizes: tuple = (1, 2, 4, 8, 16)
    mlp_expansion: int = 4
    alpha: float = 0.1  # init of every α scalar
    pos_mlp_hidden: int = 32
    # InitialPosEmb ablation: positional MLPs only in the first encoder layer (the decoder always has them)
    pos_emb_all_layers: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_heads(self) -> int:
        return max(self.channels // self.head_size, 1)

    def with_(self, **kw) -> "FlipConfig":
        return replace(self, **kw)
