"""Package attributes that import their module on first use (PEP 562), so that importing a package loads no torch."""
from __future__ import annotations

import importlib


def lazy_attributes(package: str, names: dict[str, str]):
    """(__getattr__, __dir__) for a package whose `names` map an attribute to the (relative) module defining it."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    def __dir__():
        return sorted(set(vars(importlib.import_module(package))) | set(names))

    return __getattr__, __dir__
