"""Attention over packed variable-length sequences, and the encoder's self-attention (docs/flip.md §4.4).

Objects are packed along one token axis (no padding). Attention must stay inside each object: either one SDPA
call per segment ("loop", the fastest on CPU: no masked-out work) or one call with a boolean block-diagonal mask
("mask", one kernel launch, better on GPU when there are many small segments).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import numerics
from .numerics import Linear
from .position import PositionMLP

ATTENTION_KERNELS = ("auto", "loop", "mask", "math")


def _math_attention(q, k, v):
    """Explicit (QKᵀ)·scale → softmax → ·V, the op order of the authors' ONNX graphs (closest fp32 parity)."""
    s = numerics.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return numerics.matmul(torch.softmax(s, dim=-1), v)


def block_diagonal_mask(q_lens: Sequence[int], kv_lens: Sequence[int], device=None) -> torch.Tensor:
    """(Σq, Σkv) bool, True where query i may attend to key j (same segment)."""
    qid = torch.repeat_interleave(torch.arange(len(q_lens), device=device), torch.as_tensor(q_lens, device=device))
    kid = torch.repeat_interleave(torch.arange(len(kv_lens), device=device), torch.as_tensor(kv_lens, device=device))
    return qid[:, None] == kid[None, :]


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                     q_lens: Sequence[int], kv_lens: Sequence[int], kernel: str = "auto") -> torch.Tensor:
    """softmax(QKᵀ/√d)V per segment. q (Σq, H·d), k/v (Σkv, H·d) → (Σq, H·d). Channel block h·d…(h+1)·d−1 is head h."""
    if len(q_lens) != len(kv_lens):
        raise ValueError(f"{len(q_lens)} query segments but {len(kv_lens)} key/value segments")
    tq, c = q.shape
    d = c // heads
    if numerics.ort_order_enabled():
        kernel = "math"
    if kernel == "auto":
        kernel = "mask" if (q.is_cuda and len(q_lens) > 1) else "loop"
    sdpa = F.scaled_dot_product_attention
    if kernel == "math":
        sdpa, kernel = _math_attention, "loop"
    if kernel not in ("loop", "mask"):
        raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {ATTENTION_KERNELS}")

    def split(x):  # (n, H·d) → (H, n, d)
        return x.view(x.shape[0], heads, d).transpose(0, 1)

    if len(q_lens) == 1 or kernel == "mask":
        mask = None if len(q_lens) == 1 else block_diagonal_mask(q_lens, kv_lens, q.device)
        o = sdpa(split(q), split(k), split(v)) if mask is None else F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask)
        return o.transpose(0, 1).reshape(tq, c)
    out = q.new_empty(tq, c)
    qa = ka = 0
    for nq, nk in zip(q_lens, kv_lens):
        nq, nk = int(nq), int(nk)
        if nq:
            o = sdpa(split(q[qa:qa + nq]), split(k[ka:ka + nk]), split(v[ka:ka + nk]))
            out[qa:qa + nq] = o.transpose(0, 1).reshape(nq, c)
        qa, ka = qa + nq, ka + nk
    return out


class SelfAttention(nn.Module):
    """Q/K/V = Linear(LN(x)) + MLP(e), separate LayerNorms per projection; out = α·Linear(MHA)."""

    def __init__(self, channels: int, heads: int, alpha: float = 0.1, with_position: bool = True, pos_hidden: int = 32):
        super().__init__()
        self.heads = heads
        self.with_position = with_position
        if with_position:
            self.query = PositionMLP(channels, pos_hidden)
            self.key = PositionMLP(channels, pos_hidden)
            self.value = PositionMLP(channels, pos_hidden)
        self.q = nn.Sequential(nn.LayerNorm(channels), Linear(channels, channels))
        self.k = nn.Sequential(nn.LayerNorm(channels), Linear(channels, channels))
        self.v = nn.Sequential(nn.LayerNorm(channels), Linear(channels, channels))
        self.out = nn.Sequential(nn.Identity(), Linear(channels, channels))
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))
        self._qkv = numerics.FoldCache()

    def projections(self, x):
        """(q, k, v) = Linear(LN(x)) each; inference: one LayerNorm and one matmul with the affines folded in."""
        if not numerics.fast_path():
            return self.q(x), self.k(x), self.v(x)
        parts = [self.q, self.k, self.v]
        w, b, packed = self._qkv.get([p for m in parts for p in (m[0].weight, m[0].bias, m[1].weight, m[1].bias)],
                                     self._fold_qkv)
        xn = F.layer_norm(x, x.shape[-1:], None, None, self.q[0].eps)
        return numerics.packed_linear(xn, w, b, packed).chunk(3, dim=1)

    def _fold_qkv(self):
        w, b = numerics.fold_layernorm_linears([self.q[0], self.k[0], self.v[0]], [self.q[1], self.k[1], self.v[1]])
        return w, b, numerics.pack_weight(w)

    def position_mlps(self) -> list:
        return [self.query, self.key, self.value] if self.with_position else []

    def forward(self, x, seqlens, pos=None, kernel="auto"):
        """pos: precomputed (q_pos, k_pos, v_pos) from run_position_mlps, or None (no positional term)."""
        q, k, v = self.projections(x)
        if pos is not None:
            q, k, v = q + pos[0], k + pos[1], v + pos[2]
        o = packed_attention(q, k, v, self.heads, seqlens, seqlens, kernel)
        return self.out(o) * self.alpha
