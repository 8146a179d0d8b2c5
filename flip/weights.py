"""Reading FLIP weights into the model: the authors' checkpoints and ONNX graphs, and the project's own files.

Sources (all give the authors' state-dict keys `sparsify.*`, `layers.N.*`, `mask_extractor.*`):
  * Lightning .ckpt: `state_dict` with a `net.encoder.` prefix (any prefix is stripped).
  * ONNX: the fused single graph (their docs/flipencoder.onnx, cached as flip-tiny-fused.onnx) or the two-graph
    export flip-encoder-*.onnx + flip-predictor-*.onnx. Most initializers carry state-dict names; the few
    anonymous `onnx::MatMul_*` ones are matched through the MatMul/Gemm node that consumes them: its scope
    (e.g. /layers/layers.0/mlp/MatMul_1) names the module, the op index names the weight, the shape confirms it.
Converted weights are only ever kept in memory; nothing is written into the repository. No file runs code
when read (segcore.safe_load), and weights that are not finite are refused. Where files are found, and which
file a name means, is the registry's business (flip/segmenter.py, segcore/hub.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

ROOTS = ("sparsify.", "layers.", "mask_extractor.")
# In the authors' model but not in any output: allowed to be missing (the ONNX graphs drop it).
OPTIONAL_KEYS = ("sparsify.register_coordinates",)
# Buffers the authors' state dict carries that are not parameters here.
IGNORED_KEYS = ("sparsify.patch_sizes",)


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
PROJECT_FORMAT = "flip-weights-v1"  # the project's own inference files: {"format", "state_dict", "meta", ...}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict with the authors' keys, project meta or None) from a .ckpt / .pt / .pth, read without running
    code from the file. Lightning `.ckpt`: `state_dict` with any prefix; project files: their `meta`."""
    from segcore.safe_load import UnsafeFileError, safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = safe_torch_load(path)
    except UnsafeFileError as e:
        raise WeightImportError(str(e)) from None
    meta = None
    if isinstance(obj, Mapping) and obj.get("format") == PROJECT_FORMAT:
        meta = dict(obj.get("meta") or {})
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        from segcore.safe_load import describe_refused

        raise WeightImportError(f"{path}: no state dict found: " + (describe_refused(obj) or f"got {type(obj).__name__}"))
    out = {}
    for k, v in obj.items():
        key = strip_prefix(str(k))
        if key is not None and isinstance(v, torch.Tensor):
            out[key] = v
    if not out:
        raise WeightImportError(f"{path}: none of its {len(obj)} keys starts with {ROOTS} (after any prefix)")
    return out, meta


def checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def check_finite(sd: Mapping, source: str) -> None:
    bad = [k for k, v in sd.items() if not bool(np.isfinite(np.asarray(v.float() if isinstance(v, torch.Tensor) else v, dtype=np.float64)).all())]
    if bad:
        raise WeightImportError(f"{source}: {len(bad)} tensor(s) hold NaN or inf, e.g. {', '.join(bad[:4])}: "
                                "the file is damaged or was saved from a diverged run")


def _is_float(v) -> bool:
    return v.is_floating_point() if isinstance(v, torch.Tensor) else np.issubdtype(np.asarray(v).dtype, np.floating)


def _dtype_name(v) -> str:
    return str(v.dtype).replace("torch.", "") if isinstance(v, torch.Tensor) else str(np.asarray(v).dtype)


def load_state_dict_checked(model: torch.nn.Module, sd: Mapping, source: str = "weights") -> list[str]:
    """Copy sd into model; raise WeightImportError listing every missing / unexpected / mis-shaped key, or any
    non-finite tensor. Returns the optional keys that were absent (kept at their initial value)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k not in OPTIONAL_KEYS]
    absent_optional = [k for k in own if k not in sd and k in OPTIONAL_KEYS]
    unexpected = [k for k in sd if k not in own and k not in IGNORED_KEYS]
    shapes = [f"{k}: file {tuple(np.shape(sd[k]))} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(np.shape(sd[k])) != tuple(own[k].shape)]
    # a float parameter stored as integers would be cast silently (IoU 0.03): not these weights
    dtypes = [f"{k}: {_dtype_name(sd[k])}" for k in own if k in sd and own[k].is_floating_point()
              and not _is_float(sd[k])]
    if missing or unexpected or shapes or dtypes:
        lines = [f"{source} do not fit {getattr(model, 'name', type(model).__name__)}:"]
        if dtypes:
            lines.append(f"  float parameters stored as integers ({len(dtypes)}): " + "; ".join(dtypes[:5])
                         + (" ..." if len(dtypes) > 5 else ""))
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(f"{k} {tuple(own[k].shape)}" for k in missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(f"{k} {tuple(np.shape(sd[k]))}" for k in unexpected))
        if shapes:
            lines.append(f"  shape mismatch ({len(shapes)}): " + "; ".join(shapes))
        raise WeightImportError("\n".join(lines))
    check_finite({k: sd[k] for k in own if k in sd}, source)
    with torch.no_grad():
        for k, t in own.items():
            if k in sd:
                v = sd[k]
                t.copy_(v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v, dtype=np.float32)))
    return absent_optional


def load_weights(model: torch.nn.Module, path: str | os.PathLike | Sequence) -> dict | None:
    """Load .ckpt / .pt / .pth / .onnx (or [encoder.onnx, predictor.onnx]) into model. Returns the project
    meta of a project-trained file (Gaussian convention, sampler rule...), else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if all(str(p).endswith(".onnx") for p in paths):
        try:
            sd = onnx_state_dict(paths)
        except WeightImportError:
            raise
        except FileNotFoundError:
            raise
        except Exception as e:  # onnx raises DecodeError & co. for garbage
            raise WeightImportError(f"{' + '.join(str(p) for p in paths)}: not a readable ONNX file "
                                    f"({type(e).__name__}: {str(e)[:200]})") from None
        load_state_dict_checked(model, sd, " + ".join(Path(p).name for p in paths))
        return None
    if len(paths) != 1:
        raise WeightImportError(f"expected one checkpoint or ONNX files, got {paths}")
    sd, meta = read_checkpoint(paths[0])
    load_state_dict_checked(model, sd, Path(paths[0]).name)
    return meta


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
