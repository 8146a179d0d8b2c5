"""The authors' FLIP pipeline, as a reference to measure against: their C patch sampler + their ONNX in onnxruntime.

    pipe = AuthorsPipeline(onnx_path, sampler_src, threads=1)   # their flip-tiny-fused.onnx and their ext/ folder
    mask = pipe.predict(image, prompt.rho, mode="5sigma", seed=7)
    pipe.timings                                     # seconds of the last predict, per phase

The caller names both files (tests and scripts take them from FLIP_REFERENCE_DIR, tests/reference.py); nothing here
looks for them. Nothing from the reference folder enters the repository: the sampler sources (`authors-sampler/ext`, MIT) are compiled
on demand with `cc` into a cache folder outside the repo (FLIP_AUTHORS_BUILD_DIR, default <tmp>/flip-authors-sampler-<hash
of sources and flags>), with the authors' own build flags, and loaded as the CPython extension `flip_position`;
`flip-tiny-fused.onnx` runs in onnxruntime with graph optimisation off (the only setting that runs it with empty patch
sizes, see the reference README). The steps follow docs/flip.md §7: position from rho with their C
(`compute_position_rot_from_rho`), patches, ONNX position in model units, 5σ box or hierarchical grid, logit > 0.

Hierarchical: the reference file is one fused graph (encoder + predictor), so every refinement level runs the encoder
again. For boxes below ~78 px (most objects < 1 % of an image) there is a single level, so this costs nothing there.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCES = ("py_position.c", "position.c", "gaussian.c", "bbox.c", "ziggurat_inline.c")
# the authors' ext/setup.py flags (docs/flip.md §3.7)
CFLAGS = ("-O3", "-march=native", "-flto", "-ffast-math", "-funroll-loops", "-fPIC", "-shared", "-fopenmp")
# their code with IEEE arithmetic (no FMA contraction, no approximate reciprocals): what their C source specifies,
# reproducible on any CPU; the project's compat="authors" equals this build bit for bit
IEEE_CFLAGS = ("-O2", "-ffp-contract=off", "-fPIC", "-shared", "-fopenmp")
PATCH_SIZES = (1, 2, 4, 8, 16)
MASK = 0xFFFFFFFF


class ReferenceMissing(FileNotFoundError):
    pass


def _require(path, what: str) -> Path:
    if path is None or not Path(path).exists():
        raise ReferenceMissing(
            f"{what} not found{'' if path is None else f' at {path}'}. The authors' pipeline needs their files, named "
            "by the caller: their FLIP-Tiny ONNX (docs/flipencoder.onnx) and their sampler sources (ext/), both from "
            "the authors' repository CognitiveModeling/FLIP.")
    return Path(path)


def build_sampler(src: Path, build_dir: Path | None = None, cc: str | None = None,
                  cflags: tuple = CFLAGS) -> Path:
    """Compile the authors' sampler into a cache folder outside the repo (once per source/flag hash). Returns the .so."""
    import numpy

    src = _require(src, "authors' sampler sources")
    for name in SOURCES:
        _require(src / name, f"authors' sampler source {name}")
    cc = cc or os.environ.get("CC", "cc")
    inc = [sysconfig.get_paths()["include"], numpy.get_include(), str(src)]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    h = hashlib.sha256()
    for name in SOURCES + tuple(sorted(p.name for p in src.glob("*.h"))):
        h.update(name.encode() + (src / name).read_bytes())
    cflags = tuple(cflags)
    h.update(" ".join(cflags + (cc, suffix, numpy.__version__)).encode())
    out_dir = Path(build_dir or os.environ.get("FLIP_AUTHORS_BUILD_DIR") or Path(tempfile.gettempdir()) / f"flip-authors-sampler-{h.hexdigest()[:16]}")
    so = out_dir / f"flip_position{suffix}"
    if so.is_file():
        return so
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir))
    try:
        cmd = [cc, *cflags, *(f"-I{i}" for i in inc), *(str(src / n) for n in SOURCES), "-lm", "-o", str(tmp / so.name)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"compiling the authors' sampler failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
        os.replace(tmp / so.name, so)  # atomic: concurrent builders never load a half-written file
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return so


_modules: dict = {}


def load_sampler(src: Path, build_dir: Path | None = None, cflags: tuple = CFLAGS):
    """The authors' `flip_position` module (compiled on first use; their flags by default, IEEE_CFLAGS for their code
    with IEEE arithmetic), with `seed(s)` added: their initialize_ziggurat(s) mixing through the exported zigset()
    (authors-sampler README)."""
    cflags = tuple(cflags)
    key = (str(src), cflags)
    if key in _modules:
        return _modules[key]
    import ctypes

    so = build_sampler(src, build_dir, cflags=cflags)
    spec = importlib.util.spec_from_file_location("flip_position", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lib = ctypes.CDLL(str(so))
    lib.zigset.argtypes = [ctypes.c_uint32] * 4

    def seed(s: int) -> None:
        s = int(s) & MASK
        lib.zigset((s ^ 0xCAFEBABE) & MASK, (s * 69069 + 1234567) & MASK, (s * 1664525 + 1013904223) & MASK,
                   (s * 18000 + 987654321) & MASK)
        lib.r4_nor_setup()

    mod.seed = seed
    _modules[key] = mod
    return mod


def onnx_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    path = _require(path, "authors' FLIP-Tiny ONNX")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class AuthorsPipeline:
    """Per object: their sampler → their fused ONNX. Phases in `timings` (seconds): preprocess (position, sampling,
    patch layout, query grid), model (onnxruntime), postprocess (threshold, paste)."""

    def __init__(self, onnx_path: Path, sampler_src: Path, threads: int = 1, num_tokens: int = 512, tau: float = 2.67,
                 coverage: float = 1.44, num_mask_tokens: int = 2048, scale: float = 3.0, uncertainty: float = 0.01,
                 cflags: tuple = CFLAGS):
        self.sampler = load_sampler(sampler_src, cflags=cflags)
        self.session = onnx_session(onnx_path, threads)
        self.threads = int(threads)
        self.num_tokens, self.tau, self.coverage = int(num_tokens), float(tau), float(coverage)
        self.num_mask_tokens, self.scale, self.uncertainty = int(num_mask_tokens), float(scale), float(uncertainty)
        self.timings: dict[str, float] = {}
        self.last_counts: list[int] = []

    def sample(self, image: np.ndarray, rho, seed: int):
        """→ (feeds without mask_coordinates, pos_rot) for one object; patches CHW float in [0, 1]."""
        pos = self.sampler.compute_position_rot_from_rho(np.asarray(rho, np.float32).reshape(1, 5))[0]
        self.sampler.seed(seed)
        patches, coords, _, counts = self.sampler.sample_continuous_patches(
            image, pos, self.num_tokens, [float(p) for p in PATCH_SIZES], self.tau, self.coverage)
        self.last_counts = [int(c) for c in counts]
        h, w = image.shape[:2]
        feeds = {}
        for p, pa, co in zip(PATCH_SIZES, patches, coords):
            feeds[f"patches_p{p}"] = np.ascontiguousarray(np.asarray(pa).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
            feeds[f"coords_p{p}"] = np.asarray(co, np.float32).reshape(-1, 2)
        feeds["position"] = np.array([[pos[0] * w / 256, pos[1] * h / 256, pos[2] * w / 256, pos[3] * h / 256, pos[4], pos[5]]],
                                     np.float32)
        return feeds, pos

    def _logits(self, feeds, q: np.ndarray) -> np.ndarray:
        return self.session.run(["mask_logits"], {**feeds, "mask_coordinates": q.astype(np.float32)})[0].reshape(-1)

    def predict(self, image: np.ndarray, rho, mode: str = "5sigma", seed: int = 0) -> np.ndarray:
        """Bool mask (H, W) of one object."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        t0 = time.perf_counter()
        feeds, pos = self.sample(image, rho, seed)
        mx, my = (pos[0] + 1) * w / 2, (pos[1] + 1) * h / 2
        s = 5.0 * max(pos[2] * w / 2, pos[3] * h / 2)
        x0, x1 = max(0, int(mx - s)), min(w - 1, int(mx + s))
        y0, y1 = max(0, int(my - s)), min(h - 1, int(my + s))
        model = 0.0
        if x0 >= x1 or y0 >= y1:
            self.timings = dict(preprocess=time.perf_counter() - t0, model=0.0, postprocess=0.0)
            return mask
        if mode == "5sigma":
            gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
            q = np.stack([gx.ravel() / 128 - w / 256, gy.ravel() / 128 - h / 256], 1)
            t1 = time.perf_counter()
            logits = self._logits(feeds, q)
            t2 = time.perf_counter()
            mask[y0:y1 + 1, x0:x1 + 1] = (logits > 0).reshape(y1 - y0 + 1, x1 - x0 + 1)
            pre, model = t1 - t0, t2 - t1
        elif mode == "hierarchical":
            pre = time.perf_counter() - t0
            p, model = self._hierarchical(feeds, (x0, y0, x1, y1), w, h)
            t2 = time.perf_counter()
            bh, bw = p.shape
            mask[y0:y1, x0:x1] = p > 0.5
        else:
            raise ValueError(f"unknown mode {mode!r}")
        self.timings = dict(preprocess=pre, model=model, postprocess=time.perf_counter() - t2)
        return mask

    def _hierarchical(self, feeds, box, w, h):
        """docs/flip.md §7.3 with the fused graph (one encoder run per level). Returns (probabilities (bh, bw), model seconds)."""
        import torch
        import torch.nn.functional as F

        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        from .predictor import hierarchical_sizes  # the same schedule as the authors' (docs/flip.md §7.3)

        sizes = hierarchical_sizes(bw, bh, self.num_mask_tokens, self.scale)
        mx0, mx1 = x0 / 128 - w / 256, x1 / 128 - w / 256
        my0, my1 = y0 / 128 - h / 256, y1 / 128 - h / 256
        p, tau, model = None, self.uncertainty, 0.0
        for lh, lw in sizes:
            gy, gx = np.meshgrid(np.linspace(my0, my1, lh, dtype=np.float32), np.linspace(mx0, mx1, lw, dtype=np.float32),
                                 indexing="ij")
            q = np.stack([gx.ravel(), gy.ravel()], 1)
            if p is None:
                t = time.perf_counter()
                p = 1 / (1 + np.exp(-self._logits(feeds, q).astype(np.float64)))
                model += time.perf_counter() - t
            else:
                p = F.interpolate(torch.from_numpy(p.reshape(1, 1, *shape)).float(), size=(lh, lw), mode="bilinear",
                                  align_corners=False).numpy().reshape(-1).astype(np.float64)
                u = (p > tau) & (p < 1 - tau)
                while u.sum() > 1_000_000:
                    tau *= 2
                    u = (p > tau) & (p < 1 - tau)
                if u.any():
                    t = time.perf_counter()
                    p[u] = 1 / (1 + np.exp(-self._logits(feeds, q[u]).astype(np.float64)))
                    model += time.perf_counter() - t
            shape = (lh, lw)
        return p.reshape(shape), model
