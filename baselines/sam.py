"""SAM (ViT-B/L/H) from the segment-anything package, behind the Segmenter protocol.

Boxes use multimask_output=False: for an unambiguous prompt such as a box, SAM's authors recommend the single
mask (the multimask head exists for ambiguous single clicks). Boxes are passed unchanged as pixel-edge XYXY, the
COCO-style box SAM was trained and evaluated with, through the predictor's ResizeLongestSide transform.
All boxes of an image go through the decoder together, in chunks of `batch` to bound memory.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import BaselineSegmenter, register_baseline
from .weights import RANDOM, WeightsSpec, check_state_dict, load_state_dict, resolve, weights_id

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_WEIGHTS = {
    "sam-b": WeightsSpec("sam_vit_b_01ec64.pth", SAM_URL + "sam_vit_b_01ec64.pth",
                          sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "sam-l": WeightsSpec("sam_vit_l_0b3195.pth", SAM_URL + "sam_vit_l_0b3195.pth",
                          sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "sam-h": WeightsSpec("sam_vit_h_4b8939.pth", SAM_URL + "sam_vit_h_4b8939.pth",
                          sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
}
SAM_BUILDERS = {"sam-b": "build_sam_vit_b", "sam-l": "build_sam_vit_l", "sam-h": "build_sam_vit_h"}


class SamFamilySegmenter(BaselineSegmenter):
    """Shared by SAM and MobileSAM: both packages expose the same Sam module and SamPredictor."""

    mask_rule = "single-mask"  # multimask_output=False

    def __init__(self, name: str, sam, predictor_cls, wid: str, device=None, batch: int = 16):
        super().__init__(device)
        self.sam = self._adopt(name, sam, wid, batch)
        self.predictor = predictor_cls(self.sam)

    def set_image(self, image: np.ndarray) -> None:
        self._sam_set_image(image)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        import torch

        boxes = self._begin_predict(prompts)
        out: list[np.ndarray] = []
        p, sam = self.predictor, self.sam
        for start in range(0, len(boxes), self.batch):
            chunk = torch.as_tensor(boxes[start : start + self.batch], dtype=torch.float32, device=self.device)
            with self.timer("decoder"), torch.inference_mode():
                tb = p.transform.apply_boxes_torch(chunk, p.original_size)
                sparse, dense = sam.prompt_encoder(points=None, boxes=tb, masks=None)
                low_res, _ = sam.mask_decoder(
                    image_embeddings=p.features,
                    image_pe=sam.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )
            with self.timer("postprocess"), torch.inference_mode():
                masks = sam.postprocess_masks(low_res, p.input_size, p.original_size) > sam.mask_threshold
                out.extend(m for m in masks[:, 0].cpu().numpy())
        return out


def build_sam_module(name: str, weights=None):
    """The segment-anything Sam module for `name`, random or loaded (strictly, on CPU). Returns (module, weights id)."""
    import segment_anything

    if name not in SAM_BUILDERS:
        raise KeyError(f"unknown SAM variant {name!r}; choose one of {sorted(SAM_BUILDERS)}")
    sam = getattr(segment_anything, SAM_BUILDERS[name])(checkpoint=None)
    return _load_into(name, sam, SAM_WEIGHTS[name], weights)


def _load_into(name: str, module, spec: WeightsSpec, weights):
    if isinstance(weights, str) and weights == RANDOM:
        return module, RANDOM
    path = resolve(name, spec, weights)
    state = load_state_dict(name, path, key="model")
    check_state_dict(name, module.state_dict(), state, str(path))
    module.load_state_dict(state, strict=True)
    return module, weights_id(path)


def create_sam(name: str, weights=None, device=None, **kwargs) -> SamFamilySegmenter:
    from segment_anything import SamPredictor

    sam, wid = build_sam_module(name, weights)
    return SamFamilySegmenter(name, sam, SamPredictor, wid, device=device, **kwargs)


for _name, _params in (("sam-b", 93.7e6), ("sam-l", 312.3e6), ("sam-h", 641.1e6)):
    register_baseline(_name, create_sam, [SAM_WEIGHTS[_name]], f"SAM ViT-{_name[-1].upper()} (segment-anything), box prompt",
                      _params, mask_rule=SamFamilySegmenter.mask_rule)
