"""Importing the authors' weights and resolving pretrained files.

Sources (all give the authors' state-dict keys `sparsify.*`, `layers.N.*`, `mask_extractor.*`):
  * Lightning .ckpt: `state_dict` with a `net.encoder.` prefix (any prefix is stripped).
  * ONNX: the fused single graph (docs/flipencoder.onnx, shared as flip-tiny-fused.onnx) or the two-graph
    export flip-encoder-*.onnx + flip-predictor-*.onnx. Most initializers carry state-dict names; the few
    anonymous `onnx::MatMul_*` ones are matched through the MatMul/Gemm node that consumes them: its scope
    (e.g. /layers/layers.0/mlp/MatMul_1) names the module, the op index names the weight, the shape confirms it.
Converted weights are only ever kept in memory; nothing is written into the repository.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

ROOTS = ("sparsify.", "layers.", "mask_extractor.")
# In the authors' model but not in any output: allowed to be missing (the ONNX graphs drop it).
OPTIONAL_KEYS = ("sparsify.register_coordinates",)
# Buffers the authors' state dict carries that are not parameters here.
IGNORED_KEYS = ("sparsify.patch_sizes",)
PUBLISHED_ONNX_URL = "https://manuel-traub.de/onnx/flip-{part}-{variant}.onnx"
AUTHORS_REPO = "https://github.com/CognitiveModeling/FLIP"
# sha256 of files whose digest is known; others are checked for structure (shape-matched import) only.
KNOWN_SHA256 = {
    "flip-tiny-fused.onnx": "ef53c2774528f23bba55864809f79ad75e493af07b0d25c1987e86f1b3e6d6a5",
}


class WeightImportError(ValueError):
    """Weights that do not fit the model: lists the missing, unexpected and mis-shaped keys."""


def strip_prefix(key: str) -> str | None:
    """'net.encoder.layers.0.alpha' → 'layers.0.alpha'; None when no known root occurs."""
    best = None
    for root in ROOTS:
        for m in re.finditer(re.escape(root), key):
            i = m.start()
            if i == 0 or key[i - 1] == ".":
                best = i if best is None else min(best, i)
                break
    return None if best is None else key[best:]


# ---------------------------------------------------------------------------------------------- ONNX
def _scope_to_module(node_name: str) -> tuple[str, str]:
    """'/flip_encoder/layers/layers.0/mlp/MatMul_1' → ('layers.0.mlp', 'MatMul_1')."""
    parts = [p for p in node_name.split("/") if p]
    if not parts:
        return "", ""
    op = parts[-1]
    path: list[str] = []
    for p in parts[:-1]:
        if path and p.startswith(path[-1] + "."):  # torch scopes repeat the container: layers/layers.0
            path[-1] = p
        else:
            path.append(p)
    mod = ".".join(path)
    return (strip_prefix(mod + ".") or "").rstrip("."), op


def onnx_state_dict(paths: str | os.PathLike | Sequence) -> dict[str, np.ndarray]:
    """State dict (authors' keys, numpy) from one or more ONNX graphs. Anonymous weights are resolved by
    their consuming node; unresolvable anonymous initializers raise WeightImportError."""
    import onnx
    from onnx import numpy_helper

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sd: dict[str, np.ndarray] = {}
    unresolved = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        graph = onnx.load(str(path)).graph
        inits = {i.name: i for i in graph.initializer}
        consumers: dict[str, list] = {}
        for node in graph.node:
            for pos, name in enumerate(node.input):
                if name in inits:
                    consumers.setdefault(name, []).append((node, pos))
        for name, init in inits.items():
            arr = numpy_helper.to_array(init)
            key = strip_prefix(name)
            if key is not None:
                sd[key] = arr
                continue
            # anonymous: only weights consumed as the second operand of a MatMul / Gemm matter
            uses = [(n, p) for n, p in consumers.get(name, []) if n.op_type in ("MatMul", "Gemm") and p == 1]
            if not uses:
                continue  # constants (shapes, scales...) are not parameters
            node = uses[0][0]
            module, op = _scope_to_module(node.name)
            if not module:
                unresolved.append(f"{name} {arr.shape} ({path.name}: node {node.name!r})")
                continue
            trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            w = arr if (node.op_type == "Gemm" and trans_b) else arr.T
            if module.rsplit(".", 1)[-1] in ("mlp", "preprocess", "postprocess"):
                idx = op.split("_")[-1] if "_" in op else "0"
                param = {"0": "weight1", "1": "weight2"}.get(idx)
                if param is None:
                    unresolved.append(f"{name} {arr.shape} ({path.name}: node {node.name!r})")
                    continue
                key = f"{module}.{param}"
            else:
                key = f"{module}.weight"
            if key in sd and sd[key].shape != w.shape:
                unresolved.append(f"{name} {arr.shape} → {key} conflicts with {sd[key].shape}")
                continue
            sd[key] = np.ascontiguousarray(w)
    if unresolved:
        raise WeightImportError("could not place anonymous ONNX initializers: " + "; ".join(unresolved))
    return sd


# ---------------------------------------------------------------------------------------------- ckpt
def checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict from an authors' Lightning .ckpt (or a plain torch state dict), prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise WeightImportError(f"{path}: no state dict found (got {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        key = strip_prefix(k)
        if key is not None and isinstance(v, torch.Tensor):
            out[key] = v
    if not out:
        raise WeightImportError(f"{path}: none of its {len(obj)} keys starts with {ROOTS} (after any prefix)")
    return out


def load_state_dict_checked(model: torch.nn.Module, sd: Mapping, source: str = "weights") -> list[str]:
    """Copy sd into model; raise WeightImportError listing every missing / unexpected / mis-shaped key.
    Returns the optional keys that were absent (kept at their initial value)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k not in OPTIONAL_KEYS]
    absent_optional = [k for k in own if k not in sd and k in OPTIONAL_KEYS]
    unexpected = [k for k in sd if k not in own and k not in IGNORED_KEYS]
    shapes = [f"{k}: file {tuple(np.shape(sd[k]))} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(np.shape(sd[k])) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"{source} do not fit {getattr(model, 'name', type(model).__name__)}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(f"{k} {tuple(own[k].shape)}" for k in missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(f"{k} {tuple(np.shape(sd[k]))}" for k in unexpected))
        if shapes:
            lines.append(f"  shape mismatch ({len(shapes)}): " + "; ".join(shapes))
        raise WeightImportError("\n".join(lines))
    with torch.no_grad():
        for k, t in own.items():
            if k in sd:
                v = sd[k]
                t.copy_(v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v, dtype=np.float32)))
    return absent_optional


def load_weights(model: torch.nn.Module, path: str | os.PathLike | Sequence) -> list[str]:
    """Load .ckpt / .pt / .pth / .onnx (or [encoder.onnx, predictor.onnx]) into model."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if all(str(p).endswith(".onnx") for p in paths):
        return load_state_dict_checked(model, onnx_state_dict(paths), " + ".join(Path(p).name for p in paths))
    if len(paths) != 1:
        raise WeightImportError(f"expected one checkpoint or ONNX files, got {paths}")
    return load_state_dict_checked(model, checkpoint_state_dict(paths[0]), Path(paths[0]).name)


# ---------------------------------------------------------------------------------------------- resolution
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("FLIP_WEIGHTS_DIR", Path.home() / ".cache" / "flip")).expanduser()


def reference_onnx() -> Path:
    """The shared authors' FLIP-Tiny fused ONNX (env FLIP_REFERENCE_ONNX or ../shared/reference/ next to the repo)."""
    env = os.environ.get("FLIP_REFERENCE_ONNX")
    if env:
        return Path(env).expanduser()
    return repo_root().parent / "shared" / "reference" / "flip-tiny-fused.onnx"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class WeightSource:
    """One candidate: `locate(name)` returns a path (or list of paths) or None; `weights_id(paths)` names it."""

    label: str
    locate: Callable[[str], object]
    authors: bool = True  # authors' weights → per-axis Gaussian convention


def _variant(name: str) -> str:
    return name.replace("flip-", "", 1)


def _cached_files(name: str):
    d = cache_dir()
    v = _variant(name)
    for cand in ([d / f"{name}.ckpt"], [d / f"flip-encoder-{v}.onnx", d / f"flip-predictor-{v}.onnx"], [d / f"{name}-fused.onnx"]):
        if all(p.is_file() for p in cand):
            return cand if len(cand) > 1 else cand[0]
    return None


def _shared_reference(name: str):
    if name != "flip-tiny":
        return None
    p = reference_onnx()
    return p if p.is_file() else None


def _download(name: str):
    """Fetch the published two-graph ONNX pair into the cache dir (atomic). None when offline."""
    if os.environ.get("FLIP_OFFLINE"):
        return None
    v = _variant(name)
    d = cache_dir()
    out = []
    for part in ("encoder", "predictor"):
        url = PUBLISHED_ONNX_URL.format(part=part, variant=v)
        dst = d / f"flip-{part}-{v}.onnx"
        if not dst.is_file():
            try:
                d.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_suffix(".onnx.part")
                with urllib.request.urlopen(url, timeout=20) as r, open(tmp, "wb") as f:
                    while block := r.read(1 << 20):
                        f.write(block)
                known = KNOWN_SHA256.get(dst.name)
                if known and sha256(tmp) != known:
                    tmp.unlink(missing_ok=True)
                    raise WeightImportError(f"{url}: sha256 mismatch (expected {known})")
                os.replace(tmp, dst)
            except (urllib.error.URLError, OSError, TimeoutError):
                return None
        out.append(dst)
    return out


# Ordered candidates. Other parts of the project may insert sources (e.g. a project-trained FLIP-Tiny
# under flip/weights/) with register_weight_source(..., index=...).
WEIGHT_SOURCES: list[WeightSource] = [
    WeightSource("cache", _cached_files),
    WeightSource("shared-reference", _shared_reference),
    WeightSource("download", _download),
]


def register_weight_source(source: WeightSource, index: int | None = None) -> None:
    WEIGHT_SOURCES.insert(len(WEIGHT_SOURCES) if index is None else index, source)


def weights_id_for(paths) -> str:
    """'authors:<file names>@sha256:<first 12 hex of the first file>'; the digest is computed, not assumed."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    names = "+".join(Path(p).name for p in paths)
    digest = sha256(Path(paths[0]))
    known = KNOWN_SHA256.get(Path(paths[0]).name)
    flag = "" if known is None or known == digest else "(differs-from-published)"
    return f"authors:{names}@sha256:{digest[:12]}{flag}"


def missing_weights_message(name: str) -> str:
    v = _variant(name)
    return (f"no weights found for {name}. Looked in: FLIP_WEIGHTS_DIR / ~/.cache/flip ({cache_dir()}), "
            + ("the shared reference (FLIP_REFERENCE_ONNX or ../shared/reference/flip-tiny-fused.onnx), " if name == "flip-tiny" else "")
            + f"and the published URLs. Download flip-encoder-{v}.onnx and flip-predictor-{v}.onnx from "
            f"{PUBLISHED_ONNX_URL.format(part='{encoder,predictor}', variant=v)} (linked from the {AUTHORS_REPO} README) "
            f"or the authors' .ckpt, and put them in {cache_dir()} or pass path=...")


def resolve_weights(name: str, path=None) -> tuple[object, str, bool]:
    """→ (path or [paths], weights_id, authors?). Explicit path first, then WEIGHT_SOURCES in order."""
    if path is not None:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        for p in paths:
            if not Path(p).is_file():
                raise FileNotFoundError(f"weights file not found: {p}")
        return (paths[0] if len(paths) == 1 else paths), weights_id_for(paths), True
    for src in WEIGHT_SOURCES:
        found = src.locate(name)
        if found is not None:
            wid = weights_id_for(found)
            if not src.authors:
                wid = wid.replace("authors:", "project:", 1)
            return found, wid, src.authors
    raise FileNotFoundError(missing_weights_message(name))


def pretrained(name: str = "flip-tiny", path=None, device=None):
    """A FLIP model with trained weights. Sets model.weights_id and model.gaussian_convention (per-axis for the
    authors' weights). See resolve_weights for the search order."""
    from .gaussian import PER_AXIS, PIXEL
    from .registry import create_model

    model = create_model(name)
    found, wid, authors = resolve_weights(name, path)
    info = project_weights_info(found)  # trainer hook: project-trained files record their own convention
    if info is not None:
        wid, authors = wid.replace("authors:", "project:", 1), False
    load_weights(model, found)
    model.weights_id = wid
    model.gaussian_convention = PER_AXIS if authors else ((info or {}).get("convention")
                                                          or getattr(model, "gaussian_convention", PIXEL))
    model.eval()
    if device is not None:
        model.to(device)
    return model


# ---------------------------------------------------------------------------------------------- project weights
# Added by the trainer (flip/training): a FLIP model trained by this project (`python -m flip.train --export ...`)
# is a dict {"format": "flip-weights-v1", "state_dict", "meta": {"convention", ...}}. It is the last candidate, so
# it is used only when no authors' weights are found; its weights_id starts with "project:".
PROJECT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def project_weights_info(found) -> dict | None:
    """meta of a project-trained weights file, or None for anything else (authors' ckpt/ONNX, lists)."""
    if not isinstance(found, (str, os.PathLike)) or not str(found).endswith(".pt"):
        return None
    try:
        obj = torch.load(str(found), map_location="cpu", weights_only=False)
    except Exception:
        return None
    if isinstance(obj, Mapping) and obj.get("format") == "flip-weights-v1":
        return dict(obj.get("meta") or {})
    return None


def _project_weights(name: str):
    p = PROJECT_WEIGHTS_DIR / f"{name}-objascale.pt"
    return p if p.is_file() else None


register_weight_source(WeightSource("project", _project_weights, authors=False))
