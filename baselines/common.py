"""What every baseline adapter shares: device choice, image checks, box batching, parameter counts."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segcore.prompt import Prompt, PromptError
from segcore.image import check_image
from segcore.segmenter import PhaseTimer, count_parameters, default_device  # noqa: F401  (adapters use both)


def boxes_array(prompts: Sequence[Prompt], width: int, height: int) -> np.ndarray:
    """(N, 4) float64 pixel-edge XYXY boxes, checked to be finite and to fit the image they are used on."""
    boxes = np.zeros((len(prompts), 4), dtype=np.float64)
    for i, p in enumerate(prompts):
        b = np.asarray(p.box_xyxy, dtype=np.float64)
        if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
            raise PromptError(f"prompt {i}: box {b.tolist()} is not a finite XYXY box with x1 > x0 and y1 > y0")
        if (p.width, p.height) != (width, height):
            raise PromptError(f"prompt {i} was made for a {p.width}x{p.height} image, the set image is {width}x{height}")
        boxes[i] = b
    return boxes


class BaselineSegmenter:
    """Base for the adapters: holds the protocol attributes and the set-image state."""

    name: str = ""
    num_parameters: int = 0
    weights_id: str = ""
    backend: str = "torch"
    # which of the decoder's masks a box keeps; peers differ, so it is recorded (records' `mode` column)
    mask_rule: str = ""

    def settings(self) -> dict:
        """What ran, for run.json and the records: the backend, torch's version and the mask rule (as `mode`)."""
        import torch

        return {"backend": self.backend, "torch_version": torch.__version__,
                **({"mode": self.mask_rule} if self.mask_rule else {})}

    def __init__(self, device=None):
        self.device = default_device(device)
        self.timer = PhaseTimer(self.device)
        self.image_size: tuple[int, int] | None = None  # (H, W) of the set image

    @property
    def timings(self) -> dict:
        return dict(self.timer.times)

    def _adopt(self, name: str, module, weights_id: str, batch: int = 16):
        """Take the protocol attributes of a wrapped torch module; returns the module on the device, in eval mode."""
        self.name, self.batch, self.weights_id = name, int(batch), weights_id
        module = module.to(self.device).eval()
        self.num_parameters = count_parameters(module)
        return module

    def _sam_set_image(self, image: np.ndarray) -> None:
        """SamPredictor-style encoding (segment-anything and its forks: MobileSAM, HQ-SAM), phases timed."""
        import torch

        image = self._begin_image(image)
        p = self.predictor
        with self.timer("preprocess"):
            resized = p.transform.apply_image(image)  # longest side → 1024, as SamPredictor.set_image does
            x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with self.timer("encoder"), torch.inference_mode():
            p.set_torch_image(x, image.shape[:2])  # normalise, pad to 1024², run the image encoder

    def _begin_image(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        self.timer.reset()
        self.image_size = image.shape[:2]
        return image

    def _begin_predict(self, prompts: Sequence[Prompt]) -> np.ndarray:
        if self.image_size is None:
            raise RuntimeError(f"{self.name}: call set_image before predict")
        self.timer.reset("decoder", "postprocess")
        h, w = self.image_size
        return boxes_array(prompts, w, h)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.num_parameters}, weights={self.weights_id!r}, device={self.device!r})"


FAMILY = "baselines"  # registry entries' extra["family"]: the registry is the one list of baseline names


class LogitsSegmenter(BaselineSegmenter):
    """Adapters whose official predictor gives full-resolution mask logits: `predict_logits` returns them (one
    float32 H×W array per box, the kept mask only) and `predict` thresholds them at the predictor's threshold."""

    mask_threshold: float = 0.0

    def predict_logits(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        raise NotImplementedError

    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        logits = self.predict_logits(prompts)
        with self.timer("postprocess"):
            return [lg > self.mask_threshold for lg in logits]


def register_baseline(model: str, create_fn, files, description: str, paper_parameters: float,
                      in_paper: bool = True, **extra) -> None:
    """One registry entry (`<model>.official`) whose builder resolves the weights (downloads only when the caller
    passes download=True) and seeds the random init without touching global RNG. in_paper=False marks the models
    past the paper; extra (e.g. mask_rule) goes to the entry's extra."""
    from segcore import hub, registry

    def builder(entry, weights=None, device=None, seed: int = 0, download: bool | None = None,
                backend: str | None = None, **kw):
        import torch

        if backend not in (None, "auto", "torch"):
            raise registry.ModelError(f"{entry.name} runs in torch only; backend {backend!r} is not available for it")
        if weights is None:  # the entry's files, found and verified (or fetched, when asked) by the hub
            weights = hub.resolve(entry.name, entry.weights, download=download)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            seg = create_fn(entry.model, weights=weights, device=device, **kw)
        seg.backend = "torch"
        return seg

    registry.register(registry.ModelEntry(model, "official", builder, weights=tuple(files), description=description,
                                          paper_parameters=paper_parameters,
                                          extra={"family": FAMILY, "in_paper": in_paper, **extra}))
