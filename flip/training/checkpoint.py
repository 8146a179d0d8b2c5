"""Atomic checkpoints with everything a resumed run needs, and the small inference-only export."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch
from segcore.atomic import atomic_path


def atomic_save(obj, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """RNG states in plain types and tensors, so checkpoints load with weights_only=True (no pickle code)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
          "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from segcore.safe_load import UnsafeFileError, check_zip_size

    try:
        check_zip_size(path)  # a zip bomb is refused before it inflates
        return torch.load(path, map_location=map_location, weights_only=True)  # never runs code from the file
    except UnsafeFileError as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # one line: torch's own message runs over many (and suggests weights_only=False)
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in first:
            first = "not a PyTorch checkpoint this trainer wrote (it does not unpickle as plain data)"
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}") from None


def export_weights(model_state: dict, path, *, name: str, model_config: dict, meta: dict, half: bool = True) -> None:
    """Inference-only file: {format, name, model_config, state_dict, meta}. fp16 halves the size; the loader
    casts back to fp32. Unused parameters (register_coordinates) are kept so the state dict loads strictly.
    meta must name the rule the weights were trained with ("convention", "sampler_compat"): the loader evaluates
    with it (flip.segmenter.load_flip)."""
    missing = [k for k in ("convention", "sampler_compat") if k not in meta]
    if missing:
        raise ValueError(f"export_weights {path}: meta lacks {missing}; weights must carry the rule they were trained with")
    if meta["sampler_compat"] not in ("exact", "authors"):
        raise ValueError(f"export_weights {path}: unknown sampler_compat {meta['sampler_compat']!r}")
    sd = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
          for k, v in model_state.items()}
    atomic_save({"format": "flip-weights-v1", "name": name, "model_config": model_config, "state_dict": sd,
                 "dtype": "float16" if half else "float32", "meta": meta}, path)
