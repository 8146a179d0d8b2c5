"""FeedForwardBlock (docs/flip.md §4.4): α · (W2·SiLU(W1·LN(x) + b1) + b2); raw weight1/weight2 as in the authors' keys."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import numerics


class FeedForwardBlock(nn.Module):
    def __init__(self, channels: int, expansion: int = 4, alpha: float = 0.1):
        super().__init__()
        hidden = channels * expansion
        self.weight1 = nn.Parameter(torch.empty(hidden, channels))
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.weight2 = nn.Parameter(torch.empty(channels, hidden))
        self.bias2 = nn.Parameter(torch.zeros(channels))
        nn.init.xavier_uniform_(self.weight1)
        nn.init.xavier_uniform_(self.weight2)
        self.norm = nn.LayerNorm(channels)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if numerics.fast_path():
            if not hasattr(self, "_packed"):
                self._packed = (numerics.FoldCache(), numerics.FoldCache())
            h = F.silu(numerics.fast_linear(self.norm(x), self.weight1, self.bias1, self._packed[0]), inplace=True)
            return numerics.fast_linear(h, self.weight2, self.bias2, self._packed[1]) * self.alpha
        h = numerics.silu(numerics.linear(self.norm(x), self.weight1, self.bias1))
        return numerics.linear(h, self.weight2, self.bias2) * self.alpha
