"""One encoder layer (docs/flip.md §4.4): x ← x + α_attn·Attn(x, e); x ← x + α_layer·FFB(x)."""
from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention
from .feedforward import FeedForwardBlock


class EncoderLayer(nn.Module):
    def __init__(self, channels: int, heads: int, mlp_expansion: int = 4, alpha: float = 0.1,
                 with_position: bool = True, pos_hidden: int = 32):
        super().__init__()
        self.attention = SelfAttention(channels, heads, alpha, with_position, pos_hidden)
        self.mlp = FeedForwardBlock(channels, mlp_expansion, alpha)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))

    def forward(self, x, seqlens, pos=None, kernel="auto"):
        x = x + self.attention(x, seqlens, pos, kernel)
        return x + self.mlp(x) * self.alpha
