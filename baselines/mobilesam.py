"""MobileSAM (TinyViT encoder + SAM's prompt encoder and decoder), from the mobilesam-mirror package (module mobile_sam).

Same predictor and box handling as SAM (see sam.py): multimask_output=False, boxes batched per image.
"""
from __future__ import annotations

from .common import register_baseline
from .sam import SamFamilySegmenter, _load_into
from .weights import WeightsSpec

MOBILESAM_WEIGHTS = WeightsSpec("mobile_sam.pt", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                                sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f")


def build_mobilesam_module(weights=None):
    from mobile_sam import build_sam_vit_t

    return _load_into("mobilesam", build_sam_vit_t(checkpoint=None), MOBILESAM_WEIGHTS, weights)


def create_mobilesam(name: str = "mobilesam", weights=None, device=None, **kwargs) -> SamFamilySegmenter:
    from mobile_sam import SamPredictor

    sam, wid = build_mobilesam_module(weights)
    return SamFamilySegmenter(name, sam, SamPredictor, wid, device=device, **kwargs)


register_baseline("mobilesam", create_mobilesam, [MOBILESAM_WEIGHTS], "MobileSAM (TinyViT encoder + SAM decoder), box prompt",
                  10.13e6, mask_rule=SamFamilySegmenter.mask_rule)
