"""One model registry for the whole suite (timm style): names with tags, one `create(name)`.

A full name is `<model>.<tag>`: the model is an architecture with its inference mode (`flip-tiny`,
`flip-tiny-h` = hierarchical refinement, `sam-b`), the tag names the weights (`authors`, `project`, `official`).
A name without a tag takes the model's first tag whose weights are on this machine, else its first tag (which
then fails with the way to get the weights). The weights id of every record says which file was used.

Each family registers its entries next to its adapter (flip/segmenter.py, baselines/<model>.py,
benchmark/models.py); this module imports none of them, so it stays torch-free. Whoever wants the whole list
imports the families first (benchmark.models does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .hub import WeightFile, downloads_allowed, find


class ModelError(ValueError):
    """A model that cannot be built (unknown name, missing weights): a configuration error."""


@dataclass(frozen=True)
class ModelEntry:
    model: str  # architecture + mode, e.g. "flip-tiny-h"
    tag: str  # weights tag, e.g. "authors"
    builder: Callable[..., object]  # builder(entry, weights=None|"random"|path, device=None, seed=0, **kw)
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


def list_models(with_tags: bool = True) -> list[str]:
    return sorted(_ENTRIES) if with_tags else sorted(_ORDER)


def split_name(name: str) -> tuple[str, str | None]:
    model, _, tag = name.partition(".")
    return model, (tag or None)


def downloadable(entry: ModelEntry) -> bool:
    """Every file of the entry's first file set has a download address."""
    return bool(entry.weights) and all(f.download_url for f in entry.weights)


def get(name: str, download: bool = False) -> ModelEntry:
    """The entry for a full or untagged name; an untagged name takes the first tag with local weights (with
    download=True: the first tag whose weights are local or can be fetched, so an opt-in fetches the published ones)."""
    model, tag = split_name(name.strip().lower())
    if model not in _ORDER:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(list_models(with_tags=False)) or 'none'} "
                         "(tags: python -m benchmark --list-models)")
    if tag is None:
        tags = _ORDER[model]
        entries = [_ENTRIES[f'{model}.{t}' if t else model] for t in tags]
        usable = [e for e in entries if e.local_files() is not None or (download and downloadable(e))]
        tag = (usable[0] if usable else entries[0]).tag
    full = f"{model}.{tag}" if tag else model
    if full not in _ENTRIES:
        raise ModelError(f"model {model!r} has no weights tag {tag!r}; tags: {', '.join(_ORDER[model])}")
    return _ENTRIES[full]


def create(name: str, weights=None, device=None, seed: int = 0, **kwargs):
    """Build a Segmenter. weights: None (the tag's files), "random" (seeded random init; IoU is n/a) or a path."""
    entry = get(name, download=weights is None and downloads_allowed(kwargs.get("download")))
    return entry.builder(entry, weights=weights, device=device, seed=seed, **kwargs)
