"""Patch embeddings, one MLP per patch size (docs/flip.md §4.1).

Module indices mirror the authors' nn.Sequential layout so state-dict keys are identical
(`sparsify.patch_embeddings.{i}.layers.{j}.*`): index 0 (and the other reshape slots) are parameter-free.
"""
from __future__ import annotations

import torch
from torch import nn

from .numerics import Linear, SiLU


class FlattenCHW(nn.Module):
    """(n, c, p, p) → (n, c·p·p), channel-major."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1:].numel())


class GridPatchify(nn.Module):
    """(n, c, g·s, g·s) → (n, g, g, c·s·s): a g×g grid of s×s sub-patches, features ordered (c, h1, w1)."""

    def __init__(self, grid: int, sub: int):
        super().__init__()
        self.grid, self.sub = grid, sub

    def forward(self, x):
        n, c = x.shape[:2]
        g, s = self.grid, self.sub
        x = x.reshape(n, c, g, s, g, s).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, g, g, c * s * s)


class Regroup(nn.Module):
    """(n, 4k, 4k, c) → (n, 4, 4, k·k·c): merge k×k neighbouring cells, features ordered (h1, w1, c)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        n, _, _, c = x.shape
        k = self.k
        x = x.reshape(n, 4, k, 4, k, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, 4, 4, k * k * c)


class FlattenGrid(nn.Module):
    """(n, h, w, c) → (n, h·w·c)."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1:].numel())


class PatchEmbedding(nn.Module):
    """Embeds (n, 3, p, p) patches in [0, 1] to (n, C)."""

    def __init__(self, patch_size: int, channels: int, in_channels: int = 3):
        super().__init__()
        p, c, h = patch_size, channels, 4 * channels
        self.patch_size = p
        if p <= 4:
            layers = [FlattenCHW(), Linear(in_channels * p * p, h), SiLU(), Linear(h, c)]
        elif p in (8, 16):
            s = p // 4  # 4×4 grid of s×s sub-patches, shared sub-patch Linear
            layers = [GridPatchify(4, s), Linear(in_channels * s * s, h // 16), FlattenGrid(), SiLU(),
                      Linear(h, h), SiLU(), Linear(h, c)]
        elif p in (32, 64):  # ablation only: 4×4 sub-patches, regrouped to a 4×4 grid
            g, k = p // 4, p // 16
            layers = [GridPatchify(g, 4), Linear(in_channels * 16, h // 16), Regroup(k), SiLU(),
                      Linear(k * k * h // 16, h // 16), FlattenGrid(), SiLU(),
                      Linear(h, h), SiLU(), Linear(h, c)]
        else:
            raise ValueError(f"no patch embedding for patch size {p}; supported: 1, 2, 4, 8, 16, 32, 64")
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
