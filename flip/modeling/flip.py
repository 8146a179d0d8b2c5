"""FLIP: foveal tokenizer → L encoder layers → pixel predictor. State-dict keys equal the authors'
(`sparsify.*`, `layers.N.*`, `mask_extractor.*`), so their checkpoints load without renaming."""
from __future__ import annotations

import torch
from torch import nn

from .block import EncoderLayer
from .config import FlipConfig
from .decoder import KVCache, PixelDecoder
from .numerics import FoldCache
from .packing import TokenBatch
from .position import run_position_mlps
from .tokenizer import FovealTokenizer


class FLIP(nn.Module):
    def __init__(self, cfg: FlipConfig):
        super().__init__()
        self.cfg = cfg
        c, h = cfg.channels, cfg.num_heads
        self.sparsify = FovealTokenizer(c, cfg.patch_sizes, cfg.num_registers)
        self.layers = nn.ModuleList(
            EncoderLayer(c, h, cfg.mlp_expansion, cfg.alpha, with_position=(i == 0 or cfg.pos_emb_all_layers),
                         pos_hidden=cfg.pos_mlp_hidden)
            for i in range(cfg.layers))
        self.mask_extractor = PixelDecoder(c, h, cfg.mlp_expansion, cfg.alpha, cfg.pos_mlp_hidden)
        self._position_weights = FoldCache()

    @property
    def patch_sizes(self) -> tuple:
        return self.cfg.patch_sizes

    def encode(self, batch: TokenBatch, kernel: str = "auto") -> KVCache:
        """Encoder forward for every object in the batch → per-object keys/values for the pixel predictor.
        kernel: the attention kernel (flip/modeling/attention.py: "auto" | "loop" | "mask" | "math")."""
        x, e, seqlens = self.sparsify(batch)
        # All position MLPs of all layers (+ decoder key/value) depend only on e: evaluate them together, once.
        mlps = [m for layer in self.layers for m in layer.attention.position_mlps()]
        att = self.mask_extractor.attention
        pos = run_position_mlps(mlps + [att.key, att.value], e, self._position_weights)
        i = 0
        lens = [int(n) for n in seqlens]
        for layer in self.layers:
            if layer.attention.with_position:
                x = layer(x, lens, pos[i:i + 3], kernel)
                i += 3
            else:
                x = layer(x, lens, None, kernel)
        return self.mask_extractor.prepare_kv(x, pos[-2], pos[-1], seqlens, batch.positions)

    def encode_objects(self, patches, coords, positions, kernel: str = "auto") -> KVCache:
        """encode() of sampler output: patches[b][s], coords[b][s] per object b and patch size s, positions (B, 6)."""
        device = self.sparsify.registers.device
        return self.encode(TokenBatch.from_objects(patches, coords, positions, self.patch_sizes, device), kernel)

    def decode(self, cache: KVCache, coords: torch.Tensor, q_lens, kernel: str = "auto", chunk: int = 4096,
               workers: int = 1) -> torch.Tensor:
        """Logits (Σq,) for query coords; workers: CPU thread budget for independent query chunks."""
        return self.mask_extractor.query(cache, coords, q_lens, kernel, chunk, workers)

    def forward(self, batch: TokenBatch, coords: torch.Tensor, q_lens=None, kernel: str = "auto") -> torch.Tensor:
        """Logits for query coords (Σq, 2) (model units); q_lens[b] queries belong to object b (default: all to one)."""
        if q_lens is None:
            if batch.num_objects != 1:
                raise ValueError("q_lens is required with more than one object")
            q_lens = [coords.shape[0]]
        return self.decode(self.encode(batch, kernel), coords, q_lens, kernel)
