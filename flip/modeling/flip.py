"""FLIP: foveal tokenizer → L encoder layers → pixel predictor. State-dict keys equal the authors'
(`sparsify.*`, `layers.N.*`, `mask_extractor.*`), so their checkpoints load without renaming."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import ort_backend
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
        # "auto" (onnxruntime for CPU inference where it measured faster), "onnxruntime" or "torch"; None: the
        # FLIP_INFERENCE_BACKEND environment variable, else "auto" (flip/modeling/ort_backend.py)
        self.inference_backend: str | None = None

    @property
    def patch_sizes(self) -> tuple:
        return self.cfg.patch_sizes

    def encode(self, batch: TokenBatch, mode: str = "auto", workers: int = 1) -> KVCache:
        """Encoder forward for every object in the batch → per-object keys/values for the pixel predictor.
        workers: CPU thread budget for independent objects (the onnxruntime path)."""
        if ort_backend.use_for_encoder(self, batch.positions.device, mode):
            return ort_backend.encode(self, batch, workers)
        x, e, seqlens = self.sparsify(batch)
        # All position MLPs of all layers (+ decoder key/value) depend only on e: evaluate them together, once.
        mlps = [m for layer in self.layers for m in layer.attention.position_mlps()]
        att = self.mask_extractor.attention
        pos = run_position_mlps(mlps + [att.key, att.value], e, self._position_weights)
        i = 0
        lens = [int(n) for n in seqlens]
        for layer in self.layers:
            if layer.attention.with_position:
                x = layer(x, lens, pos[i:i + 3], mode)
                i += 3
            else:
                x = layer(x, lens, None, mode)
        return self.mask_extractor.prepare_kv(x, pos[-2], pos[-1], seqlens, batch.positions)

    def encode_objects(self, patches, coords, positions, mode: str = "auto", workers: int = 1) -> KVCache:
        """encode() of sampler output: patches[b][s], coords[b][s] per object b and patch size s, positions (B, 6).
        One CPU object on the onnxruntime path goes straight from the sampler's arrays to the graph."""
        device = self.sparsify.registers.device
        if len(patches) == 1 and ort_backend.use_for_encoder(self, device, mode) \
                and len(patches[0]) == len(self.patch_sizes) \
                and all(isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 4 for p in patches[0]):
            return ort_backend.encode_sampled(self, patches[0], coords[0], positions[0])
        return self.encode(TokenBatch.from_objects(patches, coords, positions, self.patch_sizes, device), mode, workers)

    def decode(self, cache: KVCache, coords: torch.Tensor, q_lens, mode: str = "auto", chunk: int = 4096,
               workers: int = 1) -> torch.Tensor:
        if ort_backend.use_for_decoder(self, coords.device, mode):
            return ort_backend.decode(self, cache, coords, q_lens, workers)
        return self.mask_extractor.query(cache, coords, q_lens, mode, chunk, workers)

    def forward(self, batch: TokenBatch, coords: torch.Tensor, q_lens=None, mode: str = "auto") -> torch.Tensor:
        """Logits for query coords (Σq, 2) (model units); q_lens[b] queries belong to object b (default: all to one)."""
        if q_lens is None:
            if batch.num_objects != 1:
                raise ValueError("q_lens is required with more than one object")
            q_lens = [coords.shape[0]]
        return self.decode(self.encode(batch, mode), coords, q_lens, mode)




