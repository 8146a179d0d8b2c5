"""EfficientSAM-T/S behind the Segmenter protocol, on the project's own implementation (efficientsam_model/)
or on an official TorchScript export (same two entry points, loaded with torch.jit.load).

A box is two points labelled 2 (top-left) and 3 (bottom-right), given as pixel-edge XYXY like SAM's boxes,
with the true image size (every official export rescales the points by input_h, input_w). The model returns
three masks per box; we keep the one with the highest predicted IoU, as the official examples do (sorting
here: the official code stopped sorting inside predict_masks). Only that mask is upsampled (bicubic, as
upstream) to full resolution and thresholded at 0.
"""
from __future__ import annotations

import inspect
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import BaselineSegmenter, register_baseline
from .weights import RANDOM, WeightsError, WeightsSpec, check_state_dict, load_state_dict, resolve, weights_id

_REPO = "https://github.com/yformer/EfficientSAM/raw/main/"
EFFICIENTSAM_WEIGHTS = {
    "efficientsam-t": WeightsSpec("efficient_sam_vitt.pt", _REPO + "weights/efficient_sam_vitt.pt",
                                  sha256="dff858b19600a46461cbb7de98f796b23a7a888d9f5e34c0b033f7d6eb9e4e6a"),
    # the ViT-S checkpoint is published zipped (GitHub's 100 MB limit)
    "efficientsam-s": WeightsSpec("efficient_sam_vits.pt", _REPO + "weights/efficient_sam_vits.pt.zip", _REPO + "weights/efficient_sam_vits.pt.zip"),
}
EFFICIENTSAM_VARIANTS = {"efficientsam-t": "vitt", "efficientsam-s": "vits"}
TORCHSCRIPT_URLS = {
    "efficientsam-t": _REPO + "torchscripted_model/efficient_sam_vitt_torchscript.pt",
    "efficientsam-s": _REPO + "torchscripted_model/efficient_sam_vits_torchscript.pt",
}


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry compiled code (<root>/code/...); torch.save checkpoints do not."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# predict_masks(image_embeddings, batched_points, batched_point_labels, multimask_output, input_h, input_w, ...)
PREDICT_MASKS_ARGS = ("image_embeddings", "batched_points", "batched_point_labels", "multimask_output", "input_h", "input_w")


def predict_masks_arguments(module) -> list[str]:
    """Argument names of module.predict_masks (eager or TorchScript), without self."""
    fn = module.predict_masks
    schema = getattr(fn, "schema", None)  # TorchScript methods carry their schema
    names = [a.name for a in schema.arguments] if schema is not None else list(inspect.signature(fn).parameters)
    return [n for n in names if n != "self"]


def check_predict_masks_signature(name: str, module, source: str) -> None:
    """Refuse an export whose predict_masks does not take the input size where the official one does: passing
    the image size into the wrong slot gives wrong masks with no error."""
    args = predict_masks_arguments(module)
    if tuple(args[: len(PREDICT_MASKS_ARGS)]) != PREDICT_MASKS_ARGS:
        raise WeightsError(f"{name}: {source}: predict_masks takes ({', '.join(args)}), expected the official "
                           f"({', '.join(PREDICT_MASKS_ARGS)}, ...); re-export with the current official code "
                           f"(export_to_torchscript.py) or use {TORCHSCRIPT_URLS.get(name, 'the official export')}")


def build_efficientsam_module(name: str, weights=None, device: str = "cpu"):
    """(module, weights id): random, a state-dict checkpoint (strict), or a TorchScript export."""
    import torch

    from .efficientsam_model import build_efficient_sam

    if name not in EFFICIENTSAM_VARIANTS:
        raise KeyError(f"unknown EfficientSAM variant {name!r}; choose one of {sorted(EFFICIENTSAM_VARIANTS)}")
    model = build_efficient_sam(EFFICIENTSAM_VARIANTS[name])
    if isinstance(weights, str) and weights == RANDOM:
        return model, RANDOM
    spec = EFFICIENTSAM_WEIGHTS[name]
    path = resolve(name, spec, weights)
    if is_torchscript(path):
        try:
            scripted = torch.jit.load(str(path), map_location=device)
        except Exception as e:
            raise WeightsError(f"{name}: cannot load TorchScript export {path} ({type(e).__name__}: {e}); "
                               f"official export: {TORCHSCRIPT_URLS[name]}") from e
        # the export's parameters must have this variant's architecture too
        expected = dict(model.named_parameters())
        expected.update(dict(model.named_buffers()))  # TorchScript also lists non-persistent buffers
        got = dict(scripted.named_parameters())
        got.update(dict(scripted.named_buffers()))
        check_state_dict(name, expected, got, f"TorchScript export {path}")
        check_predict_masks_signature(name, scripted, f"TorchScript export {path}")
        return scripted.eval(), weights_id(path)
    state = load_state_dict(name, path, key="model")
    check_state_dict(name, model.state_dict(), state, str(path))
    model.load_state_dict(state, strict=True)
    return model, weights_id(path)


def select_best_mask(masks, iou):
    """masks (Q, K, h, w), iou (Q, K) → (Q, 1, h, w): per query the mask with the highest predicted IoU
    (the first on ties, like a stable descending sort)."""
    import torch

    best = torch.argmax(iou, dim=1)
    return torch.take_along_dim(masks, best[:, None, None, None], dim=1)


class EfficientSamSegmenter(BaselineSegmenter):
    mask_rule = "score-argmax"  # of the three multimask outputs, the highest predicted IoU
    def __init__(self, name: str, weights=None, device=None, batch: int = 16):
        super().__init__(device)
        module, wid = build_efficientsam_module(name, weights, self.device)
        self.model = self._adopt(name, module, wid, batch)
        self.embeddings = None

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = self._begin_image(image)
        with self.timer("preprocess"):
            x = torch.as_tensor(image, device=self.device).permute(2, 0, 1)[None].float() / 255.0
        with self.timer("encoder"), torch.inference_mode():
            self.embeddings = self.model.get_image_embeddings(x)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        boxes = self._begin_predict(prompts)
        h, w = self.image_size
        out: list[np.ndarray] = []
        for start in range(0, len(boxes), self.batch):
            chunk = torch.as_tensor(boxes[start : start + self.batch], dtype=torch.float32, device=self.device)
            q = chunk.shape[0]
            with self.timer("decoder"), torch.inference_mode():
                points = chunk.reshape(1, q, 2, 2)  # [[x0, y0], [x1, y1]] per box
                labels = torch.tensor([2, 3], device=self.device).expand(1, q, 2).contiguous()
                low_res, iou = self.model.predict_masks(self.embeddings, points, labels, True, h, w)
                best = select_best_mask(low_res[0], iou[0])
            with self.timer("postprocess"), torch.inference_mode():
                masks = F.interpolate(best, (h, w), mode="bicubic") >= 0.0  # upstream: torch.ge(logits, 0)
                out.extend(m for m in masks[:, 0].cpu().numpy())
        return out


def create_efficientsam(name: str, weights=None, device=None, **kwargs) -> EfficientSamSegmenter:
    return EfficientSamSegmenter(name, weights=weights, device=device, **kwargs)


for _name, _params in (("efficientsam-t", 10.22e6), ("efficientsam-s", 26.41e6)):
    register_baseline(_name, create_efficientsam, [EFFICIENTSAM_WEIGHTS[_name]],
                      f"EfficientSAM-{_name[-1].upper()} (the project's port of the official model), box prompt", _params,
                      mask_rule=EfficientSamSegmenter.mask_rule)
