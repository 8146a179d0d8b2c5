"""The project's own EfficientSAM (ViT-T / ViT-S): plain ViT image encoder, point/box prompt encoder and SAM's
two-way-transformer mask decoder. Parameter names and shapes follow the released checkpoints
(efficient_sam_vitt.pt, efficient_sam_vits.pt) so those load strictly."""
from .model import EfficientSam, build_efficient_sam, EFFICIENTSAM_CONFIGS  # noqa: F401
