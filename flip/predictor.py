"""Stateful FLIP inference (segment-anything style): set_image once, then predict any number of prompts.

Modes (docs/flip.md §7):
  "5sigma"        query every integer pixel of the box μ ± 5·σ_iso (σ_iso = max principal std, pixels).
  "hierarchical"  coarse ≈45×45 grid over the same box (exclusive bounds), then ×s upsampling where only the
                  uncertain pixels (τ_u < p < 1 − τ_u) are re-queried, ending at full resolution.
Degenerate inputs: principal stds are clamped to SIGMA_MIN_PX (0.64 px = 0.005 model units, the smallest object
the authors trained on), so 1-pixel objects still get a 5σ box of a few pixels; an empty box or zero sampled
tokens gives an empty mask; a NaN / non-PSD Gaussian or one the sampler rejects raises PromptError naming the object.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .ort import run as ort_run
from .ort import select_backend
from .runtime import intra_op_threads
from segcore.prompt import Prompt, PromptError, validate_rho

from .gaussian import CONVENTIONS, PER_AXIS, model_position, sampler_gaussian
from segcore.image import check_image
from segcore.segmenter import PhaseTimer, default_device

MODES = ("5sigma", "hierarchical")
SIGMA_MIN_PX = 0.64  # 0.005 model units


def box_5sigma(g: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Inclusive pixel box (x_min, y_min, x_max, y_max) of μ ± 5σ_iso (docs/flip.md §7.2); None when empty."""
    s = 5.0 * max(float(g[2]), float(g[3]))
    x0, x1 = max(0, int(g[0] - s)), min(width - 1, int(g[0] + s))
    y0, y1 = max(0, int(g[1] - s)), min(height - 1, int(g[1] + s))
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def hierarchical_sizes(bw: int, bh: int, num_mask_tokens: int = 2048, scale: float = 3.0) -> list[tuple[int, int]]:
    """The (h, w) grid schedule of docs/flip.md §7.3 for a bw × bh box; e.g. 1000×1000 → [(45,45),(212,212),(1000,1000)]."""
    iw = ih = int(math.sqrt(num_mask_tokens))
    if bw > bh:
        iw = int(iw * bw / bh)
    elif bh > bw:
        ih = int(ih * bh / bw)
    s = scale
    if iw * math.sqrt(s) > bw or ih * math.sqrt(s) > bh:
        iw, ih = bw, bh
    ratio = max(bw, bh) / max(iw, ih)
    n = int(math.floor(math.log(ratio) / math.log(s))) if ratio > 1 else 0
    if n > 0:
        s = ratio ** (1.0 / n)
    sizes = [(ih, iw)] + [(int(ih * s**i), int(iw * s**i)) for i in range(1, n)]
    if sizes[-1] != (bh, bw):
        sizes.append((bh, bw))
    return sizes


def object_seed(seed: int, identity: str) -> int:
    """Per-object sampler seed (< 2**32, as compat="authors" needs) from (run seed, object identity): the identity is
    Prompt.identity(), "image/object" when the prompt carries them, else the prompt's own numbers, never its batch
    position, so an object gets the same patches alone, in any batch and in a resumed run."""
    digest = hashlib.sha256(f"{int(seed)}/{identity}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")  # (one hash, ~1 µs: a small object's whole predict is ~1 ms)


class FlipPredictor:
    def __init__(self, model, mode: str = "5sigma", num_tokens: int = 512, tau: float = 2.67, coverage: float = 1.44,
                 seed: int = 0, convention: str | None = None, device=None, uncertainty: float = 0.01,
                 num_mask_tokens: int = 2048, scale: float = 3.0, sampler_backend: str = "c",
                 query_chunk: int = 4096, attention: str = "auto", threads: int | None = None,
                 sampler_compat: str | None = None, backend: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        convention = convention or getattr(model, "gaussian_convention", PER_AXIS)
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown Gaussian convention {convention!r}; choose one of {CONVENTIONS}")
        # CPU thread budget (default: torch.get_num_threads() at each predict). Never set globally: see flip/runtime.py.
        self.threads = int(threads) if threads else None
        self.device = torch.device(device or default_device())
        self.model = model.to(self.device).eval()
        self.mode, self.convention = mode, convention
        self.num_tokens, self.tau, self.coverage, self.seed = int(num_tokens), float(tau), float(coverage), int(seed)
        self.uncertainty, self.num_mask_tokens, self.scale = float(uncertainty), int(num_mask_tokens), float(scale)
        self.sampler_backend, self.query_chunk, self.attention = sampler_backend, int(query_chunk), attention
        # execution backend, chosen once here: "onnxruntime" or "torch" (flip.ort.select_backend); what ran is recorded
        self.backend = select_backend(backend, self.model, self.device, attention)
        # the patch-sampling rule belongs to the weights (model.sampler_compat), like the Gaussian convention
        self.sampler_compat = sampler_compat or getattr(model, "sampler_compat", "exact")
        self.timer = PhaseTimer(self.device)
        self.image: np.ndarray | None = None
        self._image_time = 0.0
        self.last_tokens: list[int] = []
        self._workers = 1

    @property
    def timings(self) -> dict:
        return dict(self.timer.times)

    def set_image(self, image: np.ndarray) -> None:
        self.timer.reset()
        with self.timer("preprocess"):
            self.image = check_image(image)
        self._image_time = self.timer.times["preprocess"]

    # ------------------------------------------------------------------ preparation
    def _gaussians(self, prompt: Prompt, i: int):
        h, w = self.image.shape[:2]
        if (prompt.width, prompt.height) != (w, h):
            raise PromptError(f"object {i}: prompt is for a {prompt.width}×{prompt.height} image, the image is {w}×{h}")
        validate_rho(prompt.rho, name=f"object {i}")
        if self.sampler_compat == "authors" and self.convention == PER_AXIS:
            pos, g = self._authors_gaussians(prompt.rho, w, h)
        else:
            pos = model_position(prompt.rho, w, h, self.convention)
            g = sampler_gaussian(prompt.rho, w, h, self.convention)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(g))):
            raise PromptError(f"object {i}: Gaussian gives non-finite model position {pos.tolist()}")
        g[2:4] = np.maximum(g[2:4], SIGMA_MIN_PX)
        pos[2:4] = np.maximum(pos[2:4], SIGMA_MIN_PX / 128.0)
        return pos, g

    @staticmethod
    def _authors_gaussians(rho, w: int, h: int):
        """The authors' pipeline in float32: their rot of rho (their float32 formula), their pixel Gaussian, the
        model position = rot·(W, H, W, H)/256 (exact in float64, so equal to their float32 product after the cast)."""
        from . import sampler

        rot, g = sampler.authors_position(rho, w, h)
        pos = np.array([rot[0] * w / 256, rot[1] * h / 256, rot[2] * w / 256, rot[3] * h / 256, rot[4], rot[5]], np.float64)
        return pos, g

    def _sample(self, g: np.ndarray, i: int, prompt: Prompt | None = None):
        from . import sampler

        identity = prompt.identity() if prompt is not None else f"#{i}"
        try:
            return sampler.sample_patches(self.image, g, num_tokens=self.num_tokens, patch_sizes=self.model.patch_sizes,
                                          tau=self.tau, coverage=self.coverage, seed=object_seed(self.seed, identity),
                                          backend=self.sampler_backend, compat=self.sampler_compat)
        except ValueError as err:  # SamplerError is a ValueError
            raise PromptError(f"object {i}: patch sampler rejected the Gaussian {np.round(g, 3).tolist()}: {err}") from err

    # ------------------------------------------------------------------ predict
    @torch.inference_mode()
    def predict(self, prompts: Sequence[Prompt]) -> list[np.ndarray]:
        """Full-resolution bool masks (H, W), one per prompt, in order (the Segmenter protocol: always a list)."""
        if self.image is None:
            raise RuntimeError("call set_image(image) before predict()")
        if isinstance(prompts, Prompt):
            raise TypeError("predict takes a sequence of prompts and returns a list of masks: predict([prompt])")
        prompts = list(prompts)
        h, w = self.image.shape[:2]
        self.timer.reset()
        self.timer.times["preprocess"] = self._image_time
        masks = [np.zeros((h, w), dtype=bool) for _ in prompts]
        self.last_tokens = [0] * len(prompts)
        with self.timer("preprocess"):
            gauss = [self._gaussians(p, i) for i, p in enumerate(prompts)]  # all checks before any work
            active, boxes, patches, coords, positions = [], [], [], [], []
            for i, (pos, g) in enumerate(gauss):
                box = box_5sigma(g, w, h)
                if box is None:
                    continue
                ps = self._sample(g, i, prompts[i])
                n = int(sum(ps.counts))
                self.last_tokens[i] = n
                if n == 0:
                    continue
                active.append(i)
                boxes.append(box)
                patches.append(ps.patches)
                coords.append(ps.coords)
                positions.append(pos)
        if not active:
            return masks
        self._workers = self.threads or torch.get_num_threads()
        # ops on one thread, the budget spent on independent query chunks (flip/runtime.py says why)
        with intra_op_threads(1) if self.device.type == "cpu" else contextlib.nullcontext():
            with self.timer("encoder"):  # (packing the sampler's arrays into the model's layout counts here)
                if self.backend == "onnxruntime":
                    cache = ort_run.encode_objects(self.model, patches, coords, np.stack(positions), self._workers)
                else:
                    cache = self.model.encode_objects(patches, coords, np.stack(positions), self.attention)
            if self.mode == "5sigma":
                self._predict_5sigma(cache, active, boxes, masks)
            else:
                self._predict_hierarchical(cache, active, boxes, masks)
        return masks

    def _model_xy(self, xs, ys):
        h, w = self.image.shape[:2]
        return xs / 128.0 - w / 256.0, ys / 128.0 - h / 256.0

    def _decode(self, cache, coords, q_lens):
        if self.backend == "onnxruntime":
            return ort_run.decode(self.model, cache, coords, q_lens, self._workers)
        return self.model.decode(cache, coords, q_lens, self.attention, self.query_chunk, self._workers)

    def _predict_5sigma(self, cache, active, boxes, masks):
        with self.timer("decoder"):
            grids, q_lens = [], []
            for x0, y0, x1, y1 in boxes:  # NumPy: the same float32 values as torch, without ~10 op dispatches per object
                mx, my = self._model_xy(np.arange(x0, x1 + 1, dtype=np.float32), np.arange(y0, y1 + 1, dtype=np.float32))
                grid = np.empty((len(my), len(mx), 2), np.float32)
                grid[..., 0], grid[..., 1] = mx[None, :], my[:, None]
                grids.append(grid.reshape(-1, 2))
                q_lens.append(grids[-1].shape[0])
            coords = torch.from_numpy(grids[0] if len(grids) == 1 else np.concatenate(grids)).to(self.device)
            logits = self._decode(cache, coords, q_lens)
        with self.timer("postprocess"):
            fg = (logits > 0).cpu().numpy()
            off = 0
            for i, (x0, y0, x1, y1), n in zip(active, boxes, q_lens):
                masks[i][y0:y1 + 1, x0:x1 + 1] = fg[off:off + n].reshape(y1 - y0 + 1, x1 - x0 + 1)
                off += n

    def _predict_hierarchical(self, cache, active, boxes, masks):
        dev = self.device
        with self.timer("decoder"):
            plans = []
            for x0, y0, x1, y1 in boxes:
                (mx0, mx1), (my0, my1) = self._model_xy(np.array([x0, x1], float), np.array([y0, y1], float))
                plans.append(dict(sizes=hierarchical_sizes(x1 - x0, y1 - y0, self.num_mask_tokens, self.scale),
                                  bbox=(mx0, my0, mx1, my1), p=None, tau=self.uncertainty))
            depth = max(len(pl["sizes"]) for pl in plans)
            for level in range(depth):
                coords, q_lens, sel = [], [], []
                for pl in plans:
                    if level >= len(pl["sizes"]):
                        q_lens.append(0)
                        sel.append(None)
                        continue
                    lh, lw = pl["sizes"][level]
                    mx0, my0, mx1, my1 = pl["bbox"]
                    gy, gx = torch.meshgrid(torch.linspace(my0, my1, lh, device=dev), torch.linspace(mx0, mx1, lw, device=dev),
                                            indexing="ij")
                    grid = torch.stack((gx, gy), -1).reshape(-1, 2)
                    if pl["p"] is not None:
                        p = F.interpolate(pl["p"].view(1, 1, *pl["shape"]), size=(lh, lw), mode="bilinear",
                                          align_corners=False).view(-1)
                        pl["p"] = p
                        u = (p > pl["tau"]) & (p < 1 - pl["tau"])
                        while int(u.sum()) > 1_000_000:
                            pl["tau"] *= 2
                            u = (p > pl["tau"]) & (p < 1 - pl["tau"])
                        grid = grid[u]
                        sel.append(u)
                    else:
                        sel.append(None)
                    pl["shape"] = (lh, lw)
                    coords.append(grid)
                    q_lens.append(grid.shape[0])
                if sum(q_lens) == 0:
                    continue
                probs = torch.sigmoid(self._decode(cache, torch.cat(coords), q_lens))
                off = 0
                for pl, n, u in zip(plans, q_lens, sel):
                    part = probs[off:off + n]
                    off += n
                    if level >= len(pl["sizes"]):
                        continue
                    if pl["p"] is None:
                        pl["p"] = part
                    elif n:
                        pl["p"][u] = part
        with self.timer("postprocess"):
            for i, (x0, y0, x1, y1), pl in zip(active, boxes, plans):
                bh, bw = pl["shape"]
                masks[i][y0:y1, x0:x1] = (pl["p"] > 0.5).view(bh, bw).cpu().numpy()
