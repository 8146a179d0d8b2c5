"""HQ-SAM (ViT-B/L/H) and Light HQ-SAM (TinyViT) from the official `segment-anything-hq` package (module
segment_anything_hq), behind the Segmenter protocol.

Same image path and box handling as SAM (sam.py): ResizeLongestSide to 1024, pixel-edge XYXY boxes through the
predictor's transform, all boxes of an image decoded together in chunks of `batch`. Decoding goes through the
package's SamPredictor.predict_torch.

Mask rule, recorded as `single-mask+hq`: multimask_output=False (the authors' box-prompt protocol: "we adopt the
single mask output mode of SAM") and hq_token_only=False, the package's default, which adds SAM's single-mask
logits to the HQ token's logits. Threshold 0 (the model's mask_threshold).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import LogitsSegmenter, register_baseline
from .weights import RANDOM, WeightsSpec, check_state_dict, load_state_dict, resolve, weights_id

HQ_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"  # the authors' files (README: alternative links)
# name: (sam_model_registry key, checkpoint, published parameters). The paper's Table 10 gives sizes in MB of
# float32 (SAM-B = 358 MB = 93.7 M parameters): 362.1 / 1196.1 / 2452.1 / 40.3 MB, i.e. × 2^20 / 4.
_MB = 2**20 / 4
HQ_MODELS = {
    "hqsam-b": ("vit_b", "sam_hq_vit_b.pth", 362.1 * _MB),
    "hqsam-l": ("vit_l", "sam_hq_vit_l.pth", 1196.1 * _MB),
    "hqsam-h": ("vit_h", "sam_hq_vit_h.pth", 2452.1 * _MB),
    "light-hqsam": ("vit_tiny", "sam_hq_vit_tiny.pth", 40.3 * _MB),
}
# no sha256 is published for these files: trust on first use (segcore/hub.py)
HQ_WEIGHTS = {n: WeightsSpec(f, HQ_URL + f) for n, (_, f, _) in HQ_MODELS.items()}
MASK_RULE = "single-mask+hq"


class HQSamSegmenter(LogitsSegmenter):
    mask_rule = MASK_RULE
    hq_token_only = False

    def __init__(self, name: str, sam, wid: str, device=None, batch: int = 16):
        from segment_anything_hq import SamPredictor

        super().__init__(device)
        self.sam = self._adopt(name, sam, wid, batch)
        self.predictor = SamPredictor(self.sam)
        self.mask_threshold = float(self.sam.mask_threshold)

    def set_image(self, image: np.ndarray) -> None:
        self._sam_set_image(image)  # HQ-SAM's predictor also keeps the early ViT features it needs

    def predict_logits(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        import torch

        boxes = self._begin_predict(prompts)
        out: list[np.ndarray] = []
        p = self.predictor
        for start in range(0, len(boxes), self.batch):
            chunk = torch.as_tensor(boxes[start : start + self.batch], dtype=torch.float32, device=self.device)
            with self.timer("decoder"), torch.inference_mode():
                tb = p.transform.apply_boxes_torch(chunk, p.original_size)
                logits, _, _ = p.predict_torch(None, None, boxes=tb, multimask_output=False, return_logits=True,
                                               hq_token_only=self.hq_token_only)
                out.extend(logits[:, 0].float().cpu().numpy())
        return out


def build_hqsam_module(name: str, weights=None):
    """The segment_anything_hq Sam module for `name`, random or loaded strictly on CPU. Returns (module, weights id)."""
    from segment_anything_hq import sam_model_registry

    if name not in HQ_MODELS:
        raise KeyError(f"unknown HQ-SAM variant {name!r}; choose one of {sorted(HQ_MODELS)}")
    random = isinstance(weights, str) and weights == RANDOM
    path = None if random else resolve(name, HQ_WEIGHTS[name], weights)  # a missing file fails before building
    module = sam_model_registry[HQ_MODELS[name][0]](checkpoint=None)
    if random:
        return module, RANDOM
    state = load_state_dict(name, path, key="model")  # the official files are bare state dicts
    check_state_dict(name, module.state_dict(), state, str(path))
    module.load_state_dict(state, strict=True)
    return module, weights_id(path)


def create_hqsam(name: str, weights=None, device=None, **kwargs) -> HQSamSegmenter:
    module, wid = build_hqsam_module(name, weights)
    return HQSamSegmenter(name, module, wid, device=device, **kwargs)


_DESC = {"hqsam-b": "HQ-SAM ViT-B", "hqsam-l": "HQ-SAM ViT-L", "hqsam-h": "HQ-SAM ViT-H",
         "light-hqsam": "Light HQ-SAM (TinyViT)"}
for _name, (_key, _file, _params) in HQ_MODELS.items():
    register_baseline(_name, create_hqsam, [HQ_WEIGHTS[_name]],
                      f"{_DESC[_name]} (segment-anything-hq), box prompt; not in the paper", _params, in_paper=False,
                      mask_rule=MASK_RULE)
