"""One model registry for the whole suite (timm style): names with tags, one `create(name)`.

A full name is `<model>.<tag>`: the model is an architecture with its inference mode (`flip-tiny`,
`flip-tiny-h` = hierarchical refinement, `sam-b`), the tag names the weights (`authors`, `project`, `official`).
A name without a tag takes the model's first tag whose weights are on this machine, else its first tag (which
then fails with the way to get the weights). `resolve(name)` says which entry a name means and why, in one line
(`flip-tiny → flip-tiny.project (the authors' published weights are not in the cache …: make weights MODEL=…)`);
the benchmark prints it for every model and writes it into run.json. The weights id of every record says which
file was used.

Each family registers its entries next to its adapter (flip/segmenter.py, baselines/<model>.py,
benchmark/models.py); this module imports none of them, so it stays torch-free. Whoever wants the whole list
imports the families first (benchmark.models does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .hub import WeightFile, cache_dir, downloads_allowed, find


class ModelError(ValueError):
    """A model that cannot be built (unknown name, missing weights): a configuration error."""


HIERARCHICAL_SUFFIX = "-h"  # flip-tiny-h = FLIP-Tiny with hierarchical refinement (the paper's FLIPh rows)
HIERARCHICAL_FAMILIES = ("flip-",)  # models that have a hierarchical mode


def with_mode(name: str, mode: str | None) -> str:
    """`mode="hierarchical"` turns a FLIP name into its `-h` model (the tag kept): flip-tiny.authors → flip-tiny-h.authors."""
    model, tag = split_name(name.strip().lower())
    if mode == "hierarchical" and model.startswith(HIERARCHICAL_FAMILIES) and not model.endswith(HIERARCHICAL_SUFFIX):
        model += HIERARCHICAL_SUFFIX
    return model + (f".{tag}" if tag else "")


def weights_as_tag(name: str, weights):
    """`--weights authors` (a bare word, not a file or "random") on an untagged name means the tag: the same as
    `name.authors`. Returns (name, weights) with the tag moved into the name."""
    import os

    if (isinstance(weights, str) and "." not in name and not any(c in weights for c in "/\\.") and weights != "random"
            and not os.path.isfile(weights)):  # an existing file named like a tag (`--weights myweights`) is the file
        return f"{name}.{weights}", None
    return name, weights


@dataclass(frozen=True)
class ModelEntry:
    model: str  # architecture + mode, e.g. "flip-tiny-h"
    tag: str  # weights tag, e.g. "authors"
    # builder(entry, weights=None|"random"|path, device=None, seed=0, **kw), or "module:function" naming it: the
    # entry is then data only, and the module (torch, the model) loads when a model is built, never at registration
    builder: Callable[..., object] | str
    weights: tuple[WeightFile, ...] = ()  # every file the tag needs (alternatives: see `alternatives`)
    alternatives: tuple[tuple[WeightFile, ...], ...] = ()  # other file sets that carry the same weights
    description: str = ""
    convention: str | None = None  # Gaussian convention the weights were trained with (FLIP)
    sampler_compat: str | None = None  # patch-sampling rule the weights were trained with (FLIP)
    mode: str | None = None  # inference mode (FLIP: "5sigma" | "hierarchical")
    paper_parameters: float | None = None  # parameter count the paper reports
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}" if self.tag else self.model

    def file_sets(self) -> tuple[tuple[WeightFile, ...], ...]:
        return ((self.weights,) if self.weights else ()) + self.alternatives

    def local_files(self):
        """The first file set found on this machine (list of paths), or None. Entries without files: []."""
        sets = self.file_sets()
        if not sets:
            return []
        for files in sets:
            found = [find(f) for f in files]
            if all(found):
                return found
        return None

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model, "tag": self.tag, "description": self.description,
                "mode": self.mode, "convention": self.convention, "sampler_compat": self.sampler_compat,
                "weights": [{"file": f.filename, "sha256": f.sha256, "source": f.source, "url": f.url}
                            for f in self.weights]}


_ENTRIES: dict[str, ModelEntry] = {}
_ORDER: dict[str, list[str]] = {}  # model -> tags in registration order


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _ENTRIES:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _ENTRIES[entry.name] = entry
    _ORDER.setdefault(entry.model, []).append(entry.tag)
    return entry


def unregister(name: str) -> None:
    """Remove an entry (tests register throw-away models)."""
    entry = _ENTRIES.pop(name, None)
    if entry is not None:
        _ORDER[entry.model].remove(entry.tag)
        if not _ORDER[entry.model]:
            del _ORDER[entry.model]


def entries() -> list[ModelEntry]:
    """Every registered entry, in registration order."""
    return list(_ENTRIES.values())


def tags(model: str) -> list[str]:
    """The weights tags of one model, in registration order (the order an untagged name tries them)."""
    return list(_ORDER.get(model, ()))


def list_models(with_tags: bool = True) -> list[str]:
    return sorted(_ENTRIES) if with_tags else sorted(_ORDER)


def split_name(name: str) -> tuple[str, str | None]:
    model, _, tag = name.partition(".")
    return model, (tag or None)


@dataclass(frozen=True)
class Resolution:
    """Which entry a name means on this machine, and why (one line: `line()`)."""

    requested: str  # the name as given
    entry: ModelEntry
    files: tuple  # the local files the entry will load (empty: none needed, or not here)
    reason: str

    @property
    def name(self) -> str:
        return self.entry.name

    def line(self) -> str:
        return f"{self.requested} → {self.entry.name} ({self.reason})"

    def describe(self) -> dict:
        return {"requested": self.requested, "resolved": self.entry.name, "reason": self.reason,
                "files": [str(f) for f in self.files], "line": self.line()}


def where(path) -> str:
    """'in <cache folder>', else 'packaged with the project' (the hub's only other place: WeightFile.local)."""
    path = Path(os.path.abspath(path))  # not resolve(): a file linked into the cache is still in the cache
    try:
        path.relative_to(os.path.abspath(cache_dir()))
        return f"in {path.parent}"
    except ValueError:
        return "packaged with the project"


def _found(entry: ModelEntry, files) -> str:
    if not files:
        return "no weights needed"
    names = " + ".join(Path(f).name for f in files)
    places = dict.fromkeys(where(f) for f in files)
    return f"found {names} {', '.join(places)}"


def _not_here(entry: ModelEntry) -> str:
    source = entry.weights[0].source if entry.weights else entry.tag
    who = {"authors": "the authors' published", "official": "the official", "project": "the project's"}.get(
        source, f"the {entry.tag!r}")
    return f"{who} weights are not in the cache {cache_dir(entry.weights[0].family if entry.weights else '')}: " \
           f"make weights MODEL={entry.name}"


def downloadable(entry: ModelEntry) -> bool:
    """Every file of the entry's first file set has a download address."""
    return bool(entry.weights) and all(f.download_url for f in entry.weights)


def resolve(name: str, download: bool = False) -> Resolution:
    """The entry for a full or untagged name, the local files it will load, and the reason in words. An untagged
    name takes the first tag with local weights (skipped tags are named with how to get their weights); with
    download=True, the first tag whose weights are local or can be fetched, so an opt-in fetches the published ones."""
    requested = name.strip()
    model, tag = split_name(requested.lower())
    if model not in _ORDER:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(list_models(with_tags=False)) or 'none'} "
                         "(tags: python -m benchmark --list-models)")
    if tag is not None:
        full = f"{model}.{tag}" if tag else model
        if full not in _ENTRIES:
            raise ModelError(f"model {model!r} has no weights tag {tag!r}; tags: {', '.join(_ORDER[model])}")
        entry = _ENTRIES[full]
        files = entry.local_files()
        if files is None:
            return Resolution(requested, entry, (), "tag named; " + _not_here(entry))
        return Resolution(requested, entry, tuple(files), "tag named; " + _found(entry, files))
    skipped = []
    for t in _ORDER[model]:
        entry = _ENTRIES[f"{model}.{t}" if t else model]
        files = entry.local_files()
        if files is None:
            if download and downloadable(entry):
                why = "; ".join(_not_here(e) for e in skipped) + "; " if skipped else ""
                return Resolution(requested, entry, (), why + "not in the cache yet: downloading (opt-in)")
            skipped.append(entry)
            continue
        if not entry.file_sets():
            why = "no published weights for this architecture: random init or a file" if t == "random" else "no weights needed"
        else:
            why = _found(entry, files)
        if skipped:
            why = "; ".join(_not_here(e) for e in skipped) + "; " + why
        return Resolution(requested, entry, tuple(files), why)
    entry = _ENTRIES[f"{model}.{_ORDER[model][0]}" if _ORDER[model][0] else model]
    return Resolution(requested, entry, (), "no weights of any tag here; " + _not_here(entry))


def get(name: str, download: bool = False) -> ModelEntry:
    """The entry for a full or untagged name (see resolve)."""
    return resolve(name, download=download).entry


def create(name: str, weights=None, device=None, seed: int = 0, **kwargs):
    """Build a Segmenter. weights: None (the tag's files), "random" (seeded random init; IoU is n/a) or a path."""
    entry = get(name, download=weights is None and downloads_allowed(kwargs.get("download")))
    return build_function(entry)(entry, weights=weights, device=device, seed=seed, **kwargs)


def build_function(entry: ModelEntry) -> Callable[..., object]:
    """The entry's builder, imported on first use when it is given as "module:function"."""
    if callable(entry.builder):
        return entry.builder
    import importlib

    module, _, name = entry.builder.partition(":")
    return getattr(importlib.import_module(module), name)
