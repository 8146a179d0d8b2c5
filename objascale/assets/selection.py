"""Which objects a dataset renders: all objects of the configured source, then the categories of the split.
(Apart from objects.py, which the sources import for their shared types: no import loop between them.)"""
from __future__ import annotations

import logging

from .objaverse_source import objaverse_catalog, objaverse_objects
from .objects import ObjectAsset, ObjectSourceError, local_objects, normalise_category, split_of
from .sweethome3d import sweethome3d_objects

log = logging.getLogger(__name__)


def load_objects(cfg, download: bool = True) -> tuple[list[ObjectAsset], dict]:
    """All objects of the configured source (both splits; Objaverse downloads: the chosen ones), deterministic
    order, and a report of what was skipped. `download=False` never touches the network (Slurm shards)."""
    if cfg.object_source == "local":
        return local_objects(cfg.object_dir, cfg.object_manifest or None), {}
    if cfg.object_source == "objaverse":
        if cfg.objaverse_download:
            return objaverse_catalog(cfg, download=download)
        return objaverse_objects(cfg.objaverse_dir)
    return sweethome3d_objects(cfg.sweethome3d_dir or None), {}


def select_objects(objects: list[ObjectAsset], cfg) -> tuple[list[str], dict[str, list[ObjectAsset]]]:
    """Categories to render and their objects within the configured split.

    Explicit `categories` win; else the `num_categories` largest categories of the split (ties by name); else all.
    """
    in_split = [o for o in objects if cfg.split == "all" or split_of(o.id, cfg.eval_fraction) == cfg.split]
    by_cat: dict[str, list[ObjectAsset]] = {}
    for o in in_split:
        by_cat.setdefault(o.category, []).append(o)
    if cfg.categories:
        wanted = [normalise_category(c) for c in cfg.categories]
        missing = [c for c in wanted if c not in by_cat]
        if missing:
            raise ObjectSourceError(f"categories without objects in the {cfg.split} split: {missing}")
        cats = wanted
    else:
        cats = sorted(by_cat, key=lambda c: (-len(by_cat[c]), c))
        if cfg.num_categories > 0:
            if len(cats) < cfg.num_categories:
                log.warning("only %d categories in the %s split, %d asked", len(cats), cfg.split, cfg.num_categories)
            cats = cats[: cfg.num_categories]
        cats = sorted(cats)
    if not cats:
        raise ObjectSourceError(f"no objects in the {cfg.split} split of source {cfg.object_source!r}")
    return cats, {c: by_cat[c] for c in cats}
