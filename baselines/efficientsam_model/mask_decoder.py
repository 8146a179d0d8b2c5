"""Mask decoder: IoU token + 4 mask tokens through the two-way transformer; image tokens upsampled ×4
(two transposed convs) and dotted with per-token hypernetwork outputs. Mask 0 is the single-mask output,
masks 1-3 the multimask outputs."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from .common import MLP
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer: TwoWayTransformer,
        dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 2,
        iou_head_hidden_dim: int = 256,
        upscaling_dims: List[int] = [64, 32],
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        layers = []
        c_in = dim
        for i, c in enumerate(upscaling_dims):
            last = i == len(upscaling_dims) - 1
            layers.append(
                nn.Sequential(
                    nn.ConvTranspose2d(c_in, c, kernel_size=2, stride=2),
                    nn.Identity() if last else nn.GroupNorm(1, c),
                    nn.GELU(),
                )
            )
            c_in = c
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList([MLP(dim, dim, c_in, num_layers=2) for _ in range(self.num_mask_tokens)])
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens, num_layers=iou_head_depth)

    def forward(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, multimask_output: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings (1, C, h, w) shared by all queries; sparse (Q, N, C) → masks (Q, K, 4h, 4w), iou (Q, K)."""
        q = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(q, -1, -1), sparse], dim=1)
        image = image_embeddings.expand(q, -1, -1, -1)
        pos = image_pe.expand(q, -1, -1, -1)
        b, c, h, w = image.shape
        hs, src = self.transformer(image, pos, tokens)
        iou_out = hs[:, 0]
        mask_out = hs[:, 1 : 1 + self.num_mask_tokens]
        up = src.transpose(1, 2).reshape(b, c, h, w)
        for layer in self.final_output_upscaling_layers:
            up = layer(up)
        hyper: List[torch.Tensor] = []
        for i, mlp in enumerate(self.output_hypernetworks_mlps):
            hyper.append(mlp(mask_out[:, i]))
        hyper_in = torch.stack(hyper, dim=1)
        b, c, h, w = up.shape
        masks = (hyper_in @ up.reshape(b, c, h * w)).reshape(b, -1, h, w)
        iou = self.iou_prediction_head(iou_out)
        if multimask_output:
            return masks[:, 1:], iou[:, 1:]
        return masks[:, :1], iou[:, :1]
