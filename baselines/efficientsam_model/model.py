"""EfficientSAM assembled, with the two entry points of the released TorchScript exports:
get_image_embeddings(images) and predict_masks(embeddings, points, labels, multimask, input_h, input_w[, output_h, output_w]).

Images are (B, 3, H, W) floats in [0, 1], squashed (not letterboxed) to 1024² and ImageNet-normalised.
Points are in pixels of the input image, whose size (input_h, input_w) the caller passes to predict_masks.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

# name → (encoder width, encoder heads); depth 12, patch 16, image 1024 for both
EFFICIENTSAM_CONFIGS: Dict[str, Tuple[int, int]] = {"vitt": (192, 3), "vits": (384, 6)}


class EfficientSam(nn.Module):
    mask_threshold: float = 0.0

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, max_points: int = 6) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.decoder_max_num_input_points = max_points
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), False)

    @torch.jit.export
    def get_image_embeddings(self, batched_images: torch.Tensor) -> torch.Tensor:
        s = self.image_encoder.img_size
        x = batched_images
        if x.shape[2] != s or x.shape[3] != s:
            x = F.interpolate(x, (s, s), mode="bilinear")
        return self.image_encoder((x - self.pixel_mean) / self.pixel_std)

    @torch.jit.export
    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        batched_points: torch.Tensor,
        batched_point_labels: torch.Tensor,
        multimask_output: bool,
        input_h: int,
        input_w: int,
        output_h: int = -1,
        output_w: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """points (B, Q, N, 2) in pixels of an input_h × input_w image, labels (B, Q, N) → masks (B, Q, K, h, w)
        logits and IoU (B, Q, K), in decoder order (not sorted by IoU, like the official code since it dropped sorting)."""
        b, q, n, _ = batched_points.shape
        s = float(self.image_encoder.img_size)
        scale = torch.tensor([s / input_w, s / input_h], device=batched_points.device, dtype=torch.float32)
        pts = torch.where(batched_points >= 0, batched_points * scale, torch.full_like(batched_points, -1.0))
        labels = batched_point_labels
        m = self.decoder_max_num_input_points
        if n > m:
            pts, labels = pts[:, :, :m], labels[:, :, :m]
        elif n < m:  # pad with invalid points, as the released models were trained
            pts = F.pad(pts, (0, 0, 0, m - n), value=-1.0)
            labels = F.pad(labels, (0, m - n), value=-1.0)
        sparse = self.prompt_encoder(pts.reshape(b * q, m, 2), labels.reshape(b * q, m))
        image = image_embeddings if b == 1 else image_embeddings.repeat_interleave(q, dim=0)
        masks, iou = self.mask_decoder(image, self.prompt_encoder.get_dense_pe(), sparse, multimask_output)
        k, hh, ww = masks.shape[1], masks.shape[2], masks.shape[3]
        if output_h > 0 and output_w > 0:
            masks = F.interpolate(masks, (output_h, output_w), mode="bicubic")
            hh, ww = output_h, output_w
        return masks.reshape(b, q, k, hh, ww), iou.reshape(b, q, k)

    def forward(self, batched_images: torch.Tensor, batched_points: torch.Tensor, batched_point_labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, w = batched_images.shape[2], batched_images.shape[3]
        emb = self.get_image_embeddings(batched_images)
        return self.predict_masks(emb, batched_points, batched_point_labels, True, h, w, h, w)


def build_efficient_sam(variant: str = "vitt") -> EfficientSam:
    """Random-init EfficientSAM-T ("vitt") or -S ("vits") with the released architecture."""
    if variant not in EFFICIENTSAM_CONFIGS:
        raise KeyError(f"unknown EfficientSAM variant {variant!r}; choose one of {sorted(EFFICIENTSAM_CONFIGS)}")
    dim, heads = EFFICIENTSAM_CONFIGS[variant]
    encoder = ImageEncoderViT(img_size=1024, patch_size=16, dim=dim, depth=12, num_heads=heads, mlp_ratio=4.0, neck_dims=[256, 256])
    grid = encoder.image_embedding_size
    prompt = PromptEncoder(256, (grid, grid), (1024, 1024))
    decoder = MaskDecoder(TwoWayTransformer(depth=2, dim=256, num_heads=8, mlp_dim=2048), dim=256, num_multimask_outputs=3, iou_head_depth=2)
    return EfficientSam(encoder, prompt, decoder, max_points=6).eval()
