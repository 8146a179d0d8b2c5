"""SlimSAM-50 / SlimSAM-77 (uniform local pruning of SAM ViT-B) on `transformers`' SamModel, the way the
authors publish them (Zigeng/SlimSAM-uniform-50 / -77, loaded with SamModel + SamProcessor).

The architecture is SamConfig with the pruned ViT-B encoder of the authors' build_sam_vit_p50 / _p77 (embedding
384 / 168, MLP 1536 / 696, 12 heads, 12 blocks); prompt encoder and mask decoder are SAM's. The image goes
through transformers' SamImageProcessor (longest side 1024, normalise, pad), boxes through SamProcessor's own
coordinate transform (pixel-edge XYXY, unchanged otherwise), the masks through post_process_masks. All boxes
of an image are decoded together in chunks of `batch`.

Mask rule, recorded as `single-mask`: multimask_output=False (SAM's single output token), threshold 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import LogitsSegmenter, register_baseline
from .weights import RANDOM, WeightsError, WeightsSpec, check_state_dict, load_state_dict, resolve, weights_id

HF = "https://huggingface.co/Zigeng/"
# name: (encoder width, encoder MLP width, HF repository)
SLIM_MODELS = {"slimsam-50": (384, 1536, "SlimSAM-uniform-50"), "slimsam-77": (168, 696, "SlimSAM-uniform-77")}
# both repositories name their file model.safetensors: cached under the repository's name. No sha256 published
# outside the hub's own listing: trust on first use (segcore/hub.py)
SLIM_WEIGHTS = {n: WeightsSpec(f"{repo}.safetensors", f"{HF}{repo}/resolve/main/model.safetensors")
                for n, (_, _, repo) in SLIM_MODELS.items()}
# Published: "0.9 % (5.7M)" parameters of SAM-H for SlimSAM-77 (README, arXiv v1 abstract): the image encoder
# (SAM-H's encoder is 637M). The NeurIPS version says "1.4 % (9.1M)" for the whole (globally pruned) model.
# No figure is published for SlimSAM-50.
PUBLISHED_ENCODER = {"slimsam-77": 5.7e6}
MASK_RULE = "single-mask"


def sam_config(name: str):
    from transformers import SamConfig

    width, mlp, _ = SLIM_MODELS[name]
    return SamConfig(vision_config=dict(hidden_size=width, mlp_dim=mlp, num_attention_heads=12))


class SlimSamSegmenter(LogitsSegmenter):
    mask_rule = MASK_RULE

    def __init__(self, name: str, model, wid: str, device=None, batch: int = 16):
        from transformers import SamImageProcessor, SamProcessor

        super().__init__(device)
        self.model = self._adopt(name, model, wid, batch)
        self.processor = SamProcessor(image_processor=SamImageProcessor())  # SAM's defaults, as the authors' files
        self._embeddings = None
        self._sizes = None

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = self._begin_image(image)
        with self.timer("preprocess"):
            enc = self.processor.image_processor(image, return_tensors="pt")
            pixels = enc["pixel_values"].to(self.device)
            self._sizes = (enc["original_sizes"], enc["reshaped_input_sizes"])
        with self.timer("encoder"), torch.inference_mode():
            self._embeddings = self.model.get_image_embeddings(pixels)

    def predict_logits(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        import torch

        boxes = self._begin_predict(prompts)
        out: list[np.ndarray] = []
        original, reshaped = self._sizes
        proc = self.processor
        for start in range(0, len(boxes), self.batch):
            chunk = boxes[start : start + self.batch]
            with self.timer("decoder"), torch.inference_mode():
                tb = proc._normalize_coordinates(proc.target_size, chunk, self.image_size, is_bounding_box=True)
                tb = torch.as_tensor(tb.reshape(1, -1, 4), dtype=torch.float32, device=self.device)
                res = self.model(image_embeddings=self._embeddings, input_boxes=tb, multimask_output=False)
                logits = proc.image_processor.post_process_masks(res.pred_masks.cpu(), original, reshaped, binarize=False)[0]
                out.extend(logits[:, 0].float().numpy())
        return out


def _read(name: str, path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise WeightsError(f"{name}: cannot read {path} as safetensors ({e})") from None
    return load_state_dict(name, path)  # a pytorch_model.bin, read without running code


def build_slimsam_module(name: str, weights=None):
    """transformers' SamModel with the SlimSAM encoder, random or loaded strictly. Returns (module, weights id)."""
    from transformers import SamModel

    if name not in SLIM_MODELS:
        raise KeyError(f"unknown SlimSAM variant {name!r}; choose one of {sorted(SLIM_MODELS)}")
    random = isinstance(weights, str) and weights == RANDOM
    path = None if random else resolve(name, SLIM_WEIGHTS[name], weights)  # a missing file fails before building
    module = SamModel(sam_config(name))
    if random:
        return module, RANDOM
    state = _read(name, path)
    expected = module.state_dict()
    for tied in getattr(module, "_tied_weights_keys", None) or {}:  # saved once, shared on load
        if tied not in state:
            expected.pop(tied, None)
    check_state_dict(name, expected, state, str(path))
    module.load_state_dict(state, strict=False)
    module.tie_weights()
    return module, weights_id(path)


def create_slimsam(name: str, weights=None, device=None, **kwargs) -> SlimSamSegmenter:
    module, wid = build_slimsam_module(name, weights)
    return SlimSamSegmenter(name, module, wid, device=device, **kwargs)


for _name in SLIM_MODELS:
    register_baseline(_name, create_slimsam, [SLIM_WEIGHTS[_name]],
                      f"SlimSAM-{_name[-2:]} uniform (transformers SamModel), box prompt; not in the paper",
                      None, in_paper=False, mask_rule=MASK_RULE,
                      published_encoder_parameters=PUBLISHED_ENCODER.get(_name))
