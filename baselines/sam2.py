"""SAM 2.1 (Hiera-T/S/B+/L) from the official `sam2` package, behind the Segmenter protocol (image mode only).

The model comes from the package's own configs (configs/sam2.1/*.yaml, built with sam2.build_sam.build_sam2)
and runs through the package's SAM2ImagePredictor: set_image (resize to 1024², normalise, Hiera encoder,
no-memory embedding) and predict(box=..., multimask_output=False). Boxes are pixel-edge XYXY, passed unchanged;
the predictor normalises them by the image size. All boxes of an image go through the decoder together, in
chunks of `batch`.

Mask rule, recorded as `single-mask+stability`: multimask_output=False, as SAM 2's authors recommend for
unambiguous prompts such as boxes. In SAM 2 that is not always the single-output token: the decoder falls back
to the best-scoring of its three multimask outputs when the single mask is unstable (its
dynamic_multimask_via_stability, which build_sam2 switches on by default, as the package's own
from_pretrained does). Mask threshold 0, no hole filling (the predictor's defaults).

Names use `sam21-` because the registry's `.` separates the weights tag.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import LogitsSegmenter, register_baseline
from .weights import RANDOM, WeightsSpec, check_state_dict, load_state_dict, resolve, weights_id

SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"  # the 2.1 release (download_ckpts.sh)
# name: (config inside the sam2 package, checkpoint file, published parameters (README table, M))
SAM2_MODELS = {
    "sam21-t": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt", 38.9e6),
    "sam21-s": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt", 46.0e6),
    "sam21-bplus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt", 80.8e6),
    "sam21-l": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt", 224.4e6),
}
# no sha256 is published for these files: trust on first use (segcore/hub.py)
SAM2_WEIGHTS = {n: WeightsSpec(f, SAM2_URL + f) for n, (_, f, _) in SAM2_MODELS.items()}
MASK_RULE = "single-mask+stability"


class Sam2Segmenter(LogitsSegmenter):
    mask_rule = MASK_RULE

    def __init__(self, name: str, model, wid: str, device=None, batch: int = 16):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        super().__init__(device)
        self.model = self._adopt(name, model, wid, batch)
        self.predictor = SAM2ImagePredictor(self.model)  # mask_threshold=0, no hole/sprinkle filling
        self.mask_threshold = float(self.predictor.mask_threshold)

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = self._begin_image(image)
        with self.timer("encoder"), torch.inference_mode():
            self.predictor.set_image(image)  # includes its resize + normalise (~1 % of the encoder time)

    def predict_logits(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        import torch

        boxes = self._begin_predict(prompts)
        out: list[np.ndarray] = []
        for start in range(0, len(boxes), self.batch):
            chunk = boxes[start : start + self.batch]
            with self.timer("decoder"), torch.inference_mode():
                logits, _, _ = self.predictor.predict(box=chunk, multimask_output=False, return_logits=True)
            h, w = self.image_size
            out.extend(np.asarray(logits, dtype=np.float32).reshape(len(chunk), h, w))  # one kept mask per box
        return out


def build_sam2_module(name: str, weights=None):
    """The sam2 SAM2Base for `name`, random or loaded strictly on CPU. Returns (module, weights id)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2

    if name not in SAM2_MODELS:
        raise KeyError(f"unknown SAM 2.1 variant {name!r}; choose one of {sorted(SAM2_MODELS)}")
    random = isinstance(weights, str) and weights == RANDOM
    path = None if random else resolve(name, SAM2_WEIGHTS[name], weights)  # a missing file fails before building
    if not GlobalHydra.instance().is_initialized():  # `import sam2` does this once; someone may have cleared it
        initialize_config_module("sam2", version_base="1.2")
    module = build_sam2(SAM2_MODELS[name][0], ckpt_path=None, device="cpu", mode="eval")
    if random:
        return module, RANDOM
    state = load_state_dict(name, path, key="model")  # the official files are {"model": state_dict}
    check_state_dict(name, module.state_dict(), state, str(path))
    module.load_state_dict(state, strict=True)
    return module, weights_id(path)


def create_sam2(name: str, weights=None, device=None, **kwargs) -> Sam2Segmenter:
    module, wid = build_sam2_module(name, weights)
    return Sam2Segmenter(name, module, wid, device=device, **kwargs)


for _name, (_cfg, _file, _params) in SAM2_MODELS.items():
    register_baseline(_name, create_sam2, [SAM2_WEIGHTS[_name]],
                      f"SAM 2.1 Hiera-{_name.split('-')[1].replace('plus', '+').upper()} (sam2), box prompt; not in the paper",
                      _params, in_paper=False, mask_rule=MASK_RULE)
