"""Foveal tokenizer (docs/flip.md §4.2): patch tokens of every size + R learned register tokens, with their embeddings."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .packing import TokenBatch, object_major_index
from .patch_embed import PatchEmbedding
from .position import relative_embedding


class FovealTokenizer(nn.Module):
    def __init__(self, channels: int, patch_sizes=(1, 2, 4, 8, 16), num_registers: int = 8):
        super().__init__()
        self.patch_sizes = tuple(int(p) for p in patch_sizes)
        self.num_registers = num_registers
        self.patch_embeddings = nn.Sequential(*[PatchEmbedding(p, channels) for p in self.patch_sizes])
        self.registers = nn.Parameter(torch.randn(num_registers, channels))
        self.register_embeddings = nn.Parameter(torch.randn(num_registers, 2) * 0.25 - 5)
        # Exists in the authors' model (and counts in its parameter total) but never reaches an output.
        self.register_coordinates = nn.Parameter(torch.randn(num_registers, 2) * 0.25 + 5)

    def forward(self, batch: TokenBatch):
        """→ tokens x (T, C), embeddings e (T, 2), seqlens (B,) in the object-major layout, registers last."""
        if len(batch.patches) != len(self.patch_sizes):
            raise ValueError(f"batch has {len(batch.patches)} patch sizes, model expects {len(self.patch_sizes)} {self.patch_sizes}")
        nb = batch.num_objects
        dev = batch.positions.device
        feats, coords = [], []
        for emb, p, c in zip(self.patch_embeddings, batch.patches, batch.coords):
            if p.shape[0]:
                feats.append(emb(p))
                coords.append(c)
        obj = np.concatenate([np.repeat(np.arange(nb), batch.counts[:, s]) for s in range(batch.counts.shape[1])])
        if coords:
            c = torch.cat(coords) if len(coords) > 1 else coords[0]
            pos = batch.positions[torch.as_tensor(obj, device=dev)]
            feats.append(self.registers.repeat(nb, 1))
            e = torch.cat([relative_embedding(pos, c), self.register_embeddings.repeat(nb, 1)])
            x = torch.cat(feats)
        else:  # registers only
            x = self.registers.repeat(nb, 1)
            e = self.register_embeddings.repeat(nb, 1)
        dest, seqlens = object_major_index(batch.counts, self.num_registers)
        if nb == 1:  # registers are already last; the layout is size-major == object-major
            return x, e, seqlens
        d = torch.as_tensor(dest, device=dev)
        x = torch.empty_like(x).index_copy_(0, d, x) if not torch.is_grad_enabled() else torch.zeros_like(x).index_copy(0, d, x)
        e = torch.empty_like(e).index_copy_(0, d, e) if not torch.is_grad_enabled() else torch.zeros_like(e).index_copy(0, d, e)
        return x, e, seqlens
