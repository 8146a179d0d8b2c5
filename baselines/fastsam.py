"""FastSAM-s/x (YOLOv8s-seg / YOLOv8x-seg trained class-agnostic on SA-1B) via ultralytics' FastSAM class.

FastSAM segments everything once per image (set_image: BGR input, imgsz=1024, retina_masks=True, and the
official conf=0.4, iou=0.9). A box then picks one candidate: the mask with the highest IoU against the box
region taken as a filled rectangle, |M ∩ B| / (|B| + |M| − |M ∩ B|) — the same rule as ultralytics'
FastSAMPredictor box prompt, computed here on the candidates kept from set_image so several boxes share one
forward. The pixel-edge box is widened to whole pixels (floor x0/y0, ceil x1/y1). No candidate ⇒ an empty
mask. Phases: encoder = ultralytics preprocess + network; postprocess = NMS + full-resolution masks (+ the
chosen-mask copy in predict); decoder = the box matching.

ultralytics resets torch's thread count when it picks a device; every call into it restores the caller's.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from segcore.prompt import Prompt

from .common import BaselineSegmenter, count_parameters, register_baseline
from .weights import RANDOM, WeightsError, WeightsSpec, check_state_dict, resolve, weights_id

_ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.2.0/"
FASTSAM_WEIGHTS = {
    "fastsam-s": WeightsSpec("FastSAM-s.pt", _ASSETS + "FastSAM-s.pt"),
    "fastsam-x": WeightsSpec("FastSAM-x.pt", _ASSETS + "FastSAM-x.pt"),
}
FASTSAM_YAML = {"fastsam-s": "yolov8s-seg.yaml", "fastsam-x": "yolov8x-seg.yaml"}
NUM_CLASSES = 1  # FastSAM is class-agnostic: names == {0: "object"}
DEFAULTS = dict(imgsz=1024, conf=0.4, iou=0.9, retina_masks=True)


@contextmanager
def keep_torch_threads():
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def build_reference_model(name: str):
    """The architecture from ultralytics' YAML with nc=1, random init, built locally (no download)."""
    from ultralytics.nn.tasks import SegmentationModel

    with keep_torch_threads():
        return SegmentationModel(FASTSAM_YAML[name], nc=NUM_CLASSES, verbose=False)


def build_fastsam(name: str, weights=None):
    """(ultralytics FastSAM object, parameter count, weights id). Never downloads through ultralytics, and never
    lets it unpickle the checkpoint: the architecture comes from the YAML, the tensors from a safe read."""
    if name not in FASTSAM_YAML:
        raise KeyError(f"unknown FastSAM variant {name!r}; choose one of {sorted(FASTSAM_YAML)}")
    fs = _fastsam_from_yaml(name)
    if isinstance(weights, str) and weights == RANDOM:
        return fs, count_parameters(fs.model), RANDOM
    path = resolve(name, FASTSAM_WEIGHTS[name], weights)
    state = ultralytics_state_dict(name, path)
    check_state_dict(name, fs.model.state_dict(), state, str(path))
    fs.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return fs, count_parameters(fs.model), weights_id(path)


def ultralytics_state_dict(name: str, path) -> dict:
    """Tensors of an ultralytics checkpoint ({"model" or "ema": pickled nn.Module, ...}), read without running
    code from the file: ultralytics' own loader unpickles whole objects."""
    from segcore.safe_load import UnsafeFileError, safe_torch_load, state_dict_of

    try:
        ckpt = safe_torch_load(path)
    except UnsafeFileError as e:
        raise WeightsError(f"{name}: cannot load {path} as an ultralytics FastSAM checkpoint ({e}); "
                           f"official file: {FASTSAM_WEIGHTS[name].url}") from None
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    state = dict(net) if isinstance(net, dict) else state_dict_of(net)
    if not state:
        raise WeightsError(f"{name}: cannot load {path} as an ultralytics FastSAM checkpoint (no model tensors found); "
                           f"official file: {FASTSAM_WEIGHTS[name].url}")
    return state


def _fastsam_from_yaml(name: str):
    """The FastSAM wrapper around the architecture built from ultralytics' YAML (nc=1), random init, no download."""
    from ultralytics import FastSAM
    from ultralytics.engine.model import Model

    # FastSAM() refuses YAMLs (and would fetch a named .pt): a subclass whose task map can build the
    # network from the YAML, with nc=1, goes through ultralytics' own Model constructor
    from functools import partial

    from ultralytics.nn.tasks import SegmentationModel

    class RandomFastSAM(FastSAM):
        @property
        def task_map(self):
            tm = {k: dict(v) for k, v in super().task_map.items()}
            tm["segment"]["model"] = partial(SegmentationModel, nc=NUM_CLASSES)
            return tm

    fs = RandomFastSAM.__new__(RandomFastSAM)
    with keep_torch_threads():
        Model.__init__(fs, FASTSAM_YAML[name], task="segment")
    fs.model.names = {0: "object"}
    return fs


def ultralytics_device(device: str) -> str:
    """torch spelling → ultralytics spelling ("cuda:1" → "1")."""
    if device.startswith("cuda"):
        return device.split(":", 1)[1] if ":" in device else "0"
    return device


def box_iou_scores(masks, mask_areas, box_xyxy: np.ndarray):
    """IoU of each candidate mask (N, H, W bool) with the filled box; the box is clipped and widened to pixels."""
    import torch

    h, w = masks.shape[1:]
    x0 = min(max(int(math.floor(box_xyxy[0])), 0), w)
    y0 = min(max(int(math.floor(box_xyxy[1])), 0), h)
    x1 = min(max(int(math.ceil(box_xyxy[2])), 0), w)
    y1 = min(max(int(math.ceil(box_xyxy[3])), 0), h)
    inter = masks[:, y0:y1, x0:x1].sum(dim=(1, 2)).to(torch.float64)
    union = (x1 - x0) * (y1 - y0) + mask_areas - inter
    return inter / union.clamp(min=1.0)


class FastSamSegmenter(BaselineSegmenter):
    mask_rule = "box-iou-argmax"  # the all-instance candidate with the highest IoU with the box
    def __init__(self, name: str, weights=None, device=None, **predict_kwargs):
        super().__init__(device)
        self.name = name
        self.yolo, self.num_parameters, self.weights_id = build_fastsam(name, weights)
        self.predict_kwargs = {**DEFAULTS, **predict_kwargs}
        self.candidates = None  # (N, H, W) bool on device
        self.areas = None

    def segment_everything(self, bgr: np.ndarray):
        """One ultralytics call; returns its Results (speed dict in ms per phase)."""
        with keep_torch_threads():
            return self.yolo.predict(bgr, device=ultralytics_device(self.device), verbose=False, **self.predict_kwargs)[0]

    def set_image(self, image: np.ndarray) -> None:
        import torch

        image = self._begin_image(image)
        h, w = image.shape[:2]
        with self.timer("preprocess"):
            bgr = np.ascontiguousarray(image[:, :, ::-1])
        import time

        t0 = time.perf_counter()
        result = self.segment_everything(bgr)
        total = time.perf_counter() - t0
        # split the one call into phases with ultralytics' own per-phase profile
        enc = (result.speed.get("preprocess", 0.0) + result.speed.get("inference", 0.0)) / 1000.0
        self.timer.times["encoder"] = enc
        self.timer.times["postprocess"] = max(total - enc, 0.0)
        with self.timer("postprocess"):
            if result.masks is None or len(result.masks) == 0:
                self.candidates = torch.zeros((0, h, w), dtype=torch.bool, device=self.device)
            else:
                masks = result.masks.data
                if tuple(masks.shape[1:]) != (h, w):  # retina_masks should already give full resolution
                    masks = torch.nn.functional.interpolate(masks[None].float(), (h, w), mode="bilinear")[0]
                self.candidates = masks > 0.5
            self.areas = self.candidates.sum(dim=(1, 2)).to(torch.float64)
        self._set_image_times = dict(self.timer.times)

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        boxes = self._begin_predict(prompts)
        # set_image's postprocess (NMS + masks) belongs to this image's timings too
        self.timer.times["postprocess"] = self._set_image_times.get("postprocess", 0.0)
        h, w = self.image_size
        out: list[np.ndarray] = []
        for box in boxes:
            with self.timer("decoder"):
                best = -1
                if self.candidates.shape[0] > 0:
                    scores = box_iou_scores(self.candidates, self.areas, box)
                    best = int(scores.argmax())
            with self.timer("postprocess"):
                out.append(np.zeros((h, w), dtype=bool) if best < 0 else self.candidates[best].cpu().numpy())
        return out


def create_fastsam(name: str, weights=None, device=None, **kwargs) -> FastSamSegmenter:
    return FastSamSegmenter(name, weights=weights, device=device, **kwargs)


for _name, _params in (("fastsam-s", 11.8e6), ("fastsam-x", 72.2e6)):
    register_baseline(_name, create_fastsam, [FASTSAM_WEIGHTS[_name]],
                      f"FastSAM-{_name[-1]} (YOLOv8-seg, ultralytics), all-instance masks picked by box IoU", _params,
                      mask_rule=FastSamSegmenter.mask_rule)
