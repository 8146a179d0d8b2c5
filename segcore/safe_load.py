"""Reading PyTorch weight files without running code from them.

`torch.load(weights_only=True)` reads plain state dicts. Checkpoints that pickle whole objects (Lightning
`.ckpt` hyper-parameters, ultralytics models) are read with an unpickler whose every non-tensor global is
replaced by an inert placeholder: nothing named in the file is imported or called, tensors are rebuilt by
torch's own functions, and `state_dict_of` walks the placeholders of a pickled nn.Module tree for its tensors.
torch is imported only when a function here is called.
"""
from __future__ import annotations

import os
import pickle
import types
from collections import OrderedDict

# Globals a checkpoint may name that rebuild data, never run user code.
_ALLOWED = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"), ("torch", "device"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("builtins", "complex"), ("builtins", "bytearray"),
}


class Opaque:
    """Stands in for any class a checkpoint names: keeps its state, runs nothing."""

    _qualname = "?"

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, k, v):  # dict subclasses are filled through SETITEMS
        self.__dict__.setdefault("_items", {})[k] = v

    def append(self, v):  # list subclasses through APPENDS
        self.__dict__.setdefault("_list", []).append(v)

    def extend(self, vs):
        for v in vs:
            self.append(v)

    def __call__(self, *args, **kwargs):  # a pickled function reference used as a reducer
        return Opaque()

    def __repr__(self):
        return f"<opaque {self._qualname}>"


def _placeholder(module: str, name: str):
    return type(name, (Opaque,), {"_qualname": f"{module}.{name}"})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        import torch

        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol-2 names
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and name.endswith("Storage"):  # legacy typed storages: data only
            return getattr(torch, name)
        if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
            return getattr(torch, name)
        return _placeholder(module, name)


safe_pickle = types.ModuleType("segcore_safe_pickle")
safe_pickle.Unpickler = _Unpickler
safe_pickle.load = lambda f, **kw: _Unpickler(f, **kw).load()
safe_pickle.__name__ = "segcore_safe_pickle"


class UnsafeFileError(ValueError):
    """A weights file that cannot be read without running code from it, or is not a weights file at all."""


def _why(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


MAX_INFLATION = 4.0  # torch.save stores zip members uncompressed: a real file inflates by ~1x, a bomb by 1000x


def check_zip_size(path: str | os.PathLike) -> None:
    """UnsafeFileError when a zip-format weights file would inflate far beyond its own size, read from the zip's
    directory before a byte is decompressed (a 2 MB file can hold 5 GB of zeros)."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load names what is wrong with it
    size = os.path.getsize(path)
    if total > MAX_INFLATION * size + (1 << 20):
        raise UnsafeFileError(f"{path}: its zip members inflate to {total / 2**20:.0f} MiB from {size / 2**20:.1f} MiB "
                              f"(more than {MAX_INFLATION:g}x; torch.save stores them uncompressed): refused before reading")


def safe_torch_load(path: str | os.PathLike):
    """Load a .pt/.pth/.ckpt on CPU without executing anything from the file."""
    import torch

    check_zip_size(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # names globals outside torch's allow-list: read them as placeholders instead
    except Exception as e:  # empty, truncated, not a zip/pickle at all
        raise UnsafeFileError(f"{path}: not a readable PyTorch file ({_why(e)})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except Exception as e:
        raise UnsafeFileError(f"{path}: cannot be read safely ({_why(e)})") from None


def describe_refused(obj) -> str | None:
    """When a file's top-level object is a placeholder (a pickled call or class, not data), say what it named."""
    if isinstance(obj, Opaque):
        return (f"it holds a pickled {type(obj)._qualname} object, not weights: refused "
                "(nothing from the file was run)")
    return None


def state_dict_of(obj, prefix: str = "") -> "OrderedDict[str, object]":
    """Tensors of a pickled nn.Module tree read as placeholders (parameters and persistent buffers)."""
    import torch

    out: OrderedDict = OrderedDict()
    state = getattr(obj, "_state", None)
    if not isinstance(state, dict):
        return out
    for kind in ("_parameters", "_buffers"):
        skip = set(state.get("_non_persistent_buffers_set") or ()) if kind == "_buffers" else set()
        for k, v in (state.get(kind) or {}).items():
            if isinstance(v, torch.Tensor) and k not in skip:
                out[prefix + k] = v
    for k, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(state_dict_of(child, f"{prefix}{k}."))
    return out
