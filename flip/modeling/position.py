"""Gaussian-relative positional embedding (docs/flip.md §4.3) and the small position MLPs (2→32→32→C)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import numerics
from .numerics import Linear, SiLU

CLIP = 5.0


def relative_embedding(position: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Whitened coordinates of `coords` (n, 2) relative to the Gaussian `position` (n, 6) or (1, 6), clipped at ±5.

    position = (μx, μy, s1, s2, a, b) in model units; (a, b) is used unflipped (docs/flip.md §0), as the weights expect.
    """
    mx, my, s1, s2, a, b = position.unbind(-1)
    scale = torch.sqrt(a * a + b * b).clamp_min(1e-6)
    a, b = a / scale, b / scale
    s1, s2 = s1.clamp_min(1e-8), s2.clamp_min(1e-8)
    dx = coords[:, 0] - mx
    dy = coords[:, 1] - my
    e = torch.stack(((a * dx - b * dy) / s1, (b * dx + a * dy) / s2), dim=-1)
    return e.clamp(-CLIP, CLIP)


class PositionMLP(nn.Sequential):
    """Linear(2,32) → SiLU → Linear(32,32) → SiLU → Linear(32,C); indices 0/2/4 as in the authors' keys."""

    def __init__(self, out_features: int, hidden: int = 32):
        super().__init__(Linear(2, hidden), SiLU(), Linear(hidden, hidden), SiLU(), Linear(hidden, out_features))


def stacked_weights(mlps):
    w1 = torch.cat([p[0].weight for p in mlps], 0).t().contiguous()  # (2, M·h)
    b1 = torch.cat([p[0].bias for p in mlps], 0)
    w2 = torch.stack([p[2].weight.t() for p in mlps])  # (M, h, h)
    b2 = torch.stack([p[2].bias for p in mlps]).unsqueeze(1)
    w3 = torch.stack([p[4].weight.t() for p in mlps])  # (M, h, C)
    b3 = torch.stack([p[4].bias for p in mlps]).unsqueeze(1)
    return w1, b1, w2, b2, w3, b3


def run_position_mlps(mlps: list[PositionMLP], e: torch.Tensor, cache: numerics.FoldCache | None = None) -> list[torch.Tensor]:
    """Evaluate many position MLPs on the same embedding at once (one matmul + two bmm instead of 3·M ops).

    All MLPs must share hidden and output widths. Returns M tensors (n, C). `cache` keeps the stacked weights between
    inference calls (rebuilt when any parameter changes).
    """
    if not mlps:
        return []
    if len(mlps) == 1 or numerics.ort_order_enabled():
        return [m(e) for m in mlps]
    m = len(mlps)
    if cache is not None and numerics.fast_path():
        w1, b1, w2, b2, w3, b3 = cache.get([t for p in mlps for t in p.parameters()], lambda: stacked_weights(mlps))
    else:
        w1, b1, w2, b2, w3, b3 = stacked_weights(mlps)
    h = F.silu(torch.addmm(b1, e, w1))  # (n, M·h)
    hid = mlps[0][0].out_features
    h = h.view(e.shape[0], m, hid).transpose(0, 1)  # (M, n, h)
    h = F.silu(torch.baddbmm(b2, h, w2))
    out = torch.baddbmm(b3, h, w3)  # (M, n, C)
    return list(out.unbind(0))
