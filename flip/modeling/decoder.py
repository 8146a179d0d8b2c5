"""Pixel predictor (docs/flip.md §5): K/V computed once per object from the encoder output (the KV cache),
then any number of coordinate-only queries attend to them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attention import packed_attention
from . import numerics
from .feedforward import FeedForwardBlock
from .numerics import Linear, SiLU
from .position import PositionMLP, relative_embedding


@dataclass
class KVCache:
    """Keys/values of B packed objects: k, v (T, C), kv_lens (B,), positions (B, 6) model units."""

    k: torch.Tensor
    v: torch.Tensor
    kv_lens: np.ndarray
    positions: torch.Tensor
    packed: dict = field(default_factory=dict, repr=False)  # object index → per-head K_h, V_hᵀ (CPU inference)

    @property
    def num_objects(self) -> int:
        return len(self.kv_lens)

    def select(self, i: int) -> "KVCache":
        start = int(np.sum(self.kv_lens[:i]))
        n = int(self.kv_lens[i])
        return KVCache(self.k[start:start + n], self.v[start:start + n], self.kv_lens[i:i + 1], self.positions[i:i + 1])

    def onnx_layout(self, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Single object → (1, H, n, d) as the authors' flip-encoder-*.onnx outputs k_cached / v_cached."""
        if self.num_objects != 1:
            raise ValueError("onnx_layout needs a single-object cache; use select(i)")
        n, c = self.k.shape
        return tuple(t.view(n, heads, c // heads).transpose(0, 1).unsqueeze(0) for t in (self.k, self.v))


def _query_chunks(q_lens: np.ndarray, kv_lens: np.ndarray, chunk: int):
    """Split the packed queries into runs of ≤ chunk queries; a run may cut an object's queries in two.
    Yields (q_start, q_end, kv_start, kv_end, q_lens_run, kv_lens_run)."""
    q_off = np.concatenate([[0], np.cumsum(q_lens)])
    kv_off = np.concatenate([[0], np.cumsum(kv_lens)])
    total = int(q_off[-1])
    start = 0
    while start < total:
        end = min(start + chunk, total)
        b0 = int(np.searchsorted(q_off, start, side="right") - 1)
        b1 = int(np.searchsorted(q_off, end, side="left"))  # exclusive object bound
        ql = [int(min(end, q_off[b + 1]) - max(start, q_off[b])) for b in range(b0, b1)]
        yield start, end, int(kv_off[b0]), int(kv_off[b1]), ql, [int(x) for x in kv_lens[b0:b1]], b0, b1
        start = end


MIN_PARALLEL_CHUNK = 1024  # queries: smaller chunks cost more in per-op overhead than a second thread saves
# below this many queries one thread does it all: on a loaded machine the wait for a descheduled helper's last chunk
# cost more than the split saved (objects of ~0.1-1 % of a 0.2 MP image, 2 threads 6-29 % slower at load 5-6)
MIN_PARALLEL_QUERIES = 16384
DNNL_MIN_SCORES = 1 << 18  # below this many query×key scores per chunk torch's fused SDPA wins (call overhead)


class MaskAttention(nn.Module):
    def __init__(self, channels: int, heads: int, pos_hidden: int = 32):
        super().__init__()
        self.heads = heads
        self.key = PositionMLP(channels, pos_hidden)
        self.query = PositionMLP(channels, pos_hidden)
        self.value = PositionMLP(channels, pos_hidden)
        self.k = nn.Sequential(nn.LayerNorm(channels), Linear(channels, channels))
        self.v = nn.Sequential(nn.LayerNorm(channels), Linear(channels, channels))
        self.k_mlp = nn.Sequential(Linear(2 * channels, channels), SiLU(), Linear(channels, channels))
        self.out = nn.Sequential(nn.Identity(), Linear(channels, channels))

    def keys_values(self, x, key_pos, value_pos):
        k = self.k_mlp(torch.cat((self.k(x), key_pos), dim=1))
        v = self.v(x) + value_pos
        return k, v


class PixelDecoder(nn.Module):
    def __init__(self, channels: int, heads: int, mlp_expansion: int = 4, alpha: float = 0.1, pos_hidden: int = 32):
        super().__init__()
        self.preprocess = FeedForwardBlock(channels, mlp_expansion, alpha)
        self.attention = MaskAttention(channels, heads, pos_hidden)
        self.postprocess = FeedForwardBlock(channels, mlp_expansion, alpha)
        self.to_mask = Linear(channels, 1)
        self._tail = numerics.FoldCache()
        self._post_w1 = numerics.FoldCache()

    def fold_tail(self):
        """to_mask(o + α·(W2·h + b2)) = o·w + h·(α·W2ᵀw) + (α·w·b2 + b): the 256→64 matmul collapses to a vector."""
        post, w = self.postprocess, self.to_mask.weight[0]
        return w.contiguous(), (post.alpha * (post.weight2.t() @ w)).contiguous(), post.alpha * (w @ post.bias2) + self.to_mask.bias

    def _dnnl_attention(self, cache: KVCache, q, b0: int, q_lens, kv_lens, ks: int) -> torch.Tensor:
        """CPU inference attention: oneDNN products on each object's per-head K_h / V_hᵀ, split once per cache (reused by
        every query chunk and hierarchical level), softmax with denormals flushed (see numerics.flush_denormals).
        Measured on the real model (20k queries, 520 keys, 1 thread): 72 ms vs 83 ms with torch's SDPA."""
        heads = self.attention.heads
        scale = (q.shape[1] // heads) ** -0.5
        out = q if len(q_lens) == 1 else q.new_empty(q.shape)
        qa, ka = 0, ks
        for i, (nq, nk) in enumerate(zip(q_lens, kv_lens)):
            if nq and nk:
                packs = cache.packed.get(b0 + i)
                if packs is None:
                    packs = cache.packed[b0 + i] = numerics.packed_heads(cache.k[ka:ka + nk], cache.v[ka:ka + nk], heads)
                with numerics.flush_denormals():
                    o = numerics.dnnl_attention(q[qa:qa + nq], packs, scale)
                if len(q_lens) == 1:
                    return o
                out[qa:qa + nq] = o
            elif nq:
                out[qa:qa + nq] = 0.0  # an object without tokens: softmax over nothing (never produced by encode)
            qa, ka = qa + nq, ka + nk
        return out

    def head(self, o: torch.Tensor) -> torch.Tensor:
        """Logits (n,) from attention outputs o (n, C): o + FFB(o) → to_mask."""
        if not numerics.fast_path():
            o = o + self.postprocess(o)
            return numerics.linear(o, self.to_mask.weight, self.to_mask.bias).squeeze(-1)
        post = self.postprocess
        w, v, c = self._tail.get([post.weight2, post.bias2, post.alpha, self.to_mask.weight, self.to_mask.bias],
                                 self.fold_tail)
        h = F.silu(numerics.fast_linear(post.norm(o), post.weight1, post.bias1, self._post_w1), inplace=True)
        return torch.mv(h, v).add_(torch.mv(o, w)).add_(c)

    def prepare_kv(self, x, key_pos, value_pos, seqlens, positions) -> KVCache:
        x = x + self.preprocess(x)
        k, v = self.attention.keys_values(x, key_pos, value_pos)
        return KVCache(k, v, np.asarray(seqlens, dtype=np.int64), positions)

    def query(self, cache: KVCache, coords: torch.Tensor, q_lens, kernel: str = "auto", chunk: int = 4096,
              workers: int = 1) -> torch.Tensor:
        """Logits (Σq,) for query coordinates (Σq, 2) in model units, q_lens[b] of them for object b.
        workers > 1: query chunks run on that many threads (flip.runtime.parallel_map), each op on one thread;
        the first chunk runs alone first so that every lazily built weight cache exists before threads share it."""
        q_lens = np.asarray(q_lens, dtype=np.int64).reshape(-1)
        if len(q_lens) != cache.num_objects:
            raise ValueError(f"{len(q_lens)} query groups for {cache.num_objects} cached objects")
        total = int(q_lens.sum())
        if coords.shape != (total, 2):
            raise ValueError(f"coords must be ({total}, 2), got {tuple(coords.shape)}")
        out = coords.new_empty(total)
        att = self.attention
        use_dnnl = (numerics.fast_path() and coords.is_cpu and kernel in ("auto", "loop") and cache.k.shape[1] % att.heads == 0
                    and cache.k.dtype == torch.float32 and numerics._dnnl_available())  # (a probe reorder cost 1 ms a call)
        parallel = coords.is_cpu and numerics.fast_path() and total >= MIN_PARALLEL_QUERIES  # (ort_order is per thread)
        workers = max(1, int(workers)) if parallel else 1
        if workers > 1:  # about 4 chunks per worker, so that a descheduled worker costs at most one small chunk
            chunk = max(MIN_PARALLEL_CHUNK, min(chunk, -(-total // (4 * workers))))

        def run(c):
            qs, qe, ks, ke, ql, kl, b0, b1 = c
            obj = torch.as_tensor(np.repeat(np.arange(b0, b1), ql), device=coords.device)
            e = relative_embedding(cache.positions[obj], coords[qs:qe])
            q = att.query(e)
            if use_dnnl and (qe - qs) * (ke - ks) >= DNNL_MIN_SCORES:
                o = self._dnnl_attention(cache, q, b0, ql, kl, ks)
            else:
                o = packed_attention(q, cache.k[ks:ke], cache.v[ks:ke], att.heads, ql, kl, kernel)
            out[qs:qe] = self.head(att.out(o))

        chunks = list(_query_chunks(q_lens, cache.kv_lens, chunk))
        if workers == 1 or len(chunks) < 2:
            for c in chunks:
                run(c)
            return out
        from ..runtime import parallel_map

        if use_dnnl:  # per-object K/V packs, built once here instead of racing inside the threads
            kv_off = np.concatenate([[0], np.cumsum(cache.kv_lens)])
            for b, n in enumerate(cache.kv_lens):
                if n and b not in cache.packed:
                    cache.packed[b] = numerics.packed_heads(cache.k[kv_off[b]:kv_off[b + 1]], cache.v[kv_off[b]:kv_off[b + 1]], att.heads)
        run(chunks[0])
        parallel_map(run, chunks[1:], workers)
        return out
