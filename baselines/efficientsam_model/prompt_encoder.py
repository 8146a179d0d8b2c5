"""Points and boxes → sparse tokens. A box is two points labelled 2 (top-left) and 3 (bottom-right);
padding points carry label -1. Positions use SAM's random Fourier features."""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn


class PositionEmbeddingRandom(nn.Module):
    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """Coordinates in [0, 1] (..., 2) → (..., 2·num_feats) sin/cos features."""
        proj = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def dense(self, h: int, w: int) -> torch.Tensor:
        """(C, h, w) features of the token-grid cell centres."""
        dev = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, image_embedding_size: Tuple[int, int], input_image_size: Tuple[int, int]) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe_layer.dense(self.image_embedding_size[0], self.image_embedding_size[1])[None]

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """points (B, N, 2) in encoder-input pixels, labels (B, N) in {-1, 1, 2, 3} → (B, N, C)."""
        xy = points + 0.5  # pixel centre
        scale = torch.tensor(
            [float(self.input_image_size[1]), float(self.input_image_size[0])], device=points.device, dtype=torch.float32
        )
        emb = self.pe_layer.encode(xy.float() / scale)
        lab = labels[..., None]
        emb = emb + (lab == -1).to(emb.dtype) * self.invalid_points.weight[0]
        emb = emb + (lab == 1).to(emb.dtype) * self.point_embeddings.weight[0]
        emb = emb + (lab == 2).to(emb.dtype) * self.bbox_top_left_embeddings.weight[0]
        emb = emb + (lab == 3).to(emb.dtype) * self.bbox_bottom_right_embeddings.weight[0]
        return emb
