"""Planning: what image i shows, drawn from one Generator seeded by (run seed, index, attempt). No Blender here.

The Blender worker receives these plans as JSON; re-planning image i with the same config and assets gives
the same plan, so re-rendering image i alone reproduces it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .assets.hdri import Hdri
from .assets.objects import ObjectAsset
from .config import Config


def image_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(attempt)]))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def draw_resolution(rng: np.random.Generator, cfg: Config) -> tuple[int, int]:
    long_side = int(round(log_uniform(rng, cfg.min_side, cfg.max_side)))
    short_side = max(8, int(round(long_side * rng.uniform(cfg.aspect_min, 1.0))))
    if rng.uniform() < cfg.portrait_prob:
        return short_side, long_side
    return long_side, short_side


def area_ratio_bounds(cfg: Config, width: int, height: int) -> tuple[float, float]:
    """[lo, hi] of the planned mask-area ratio for one image: the config range, floored at min_pixels."""
    lo = max(cfg.area_ratio_min, cfg.min_pixels / float(width * height))
    hi = max(cfg.area_ratio_max, lo)
    return lo, hi


def samples_for_ratio(cfg: Config, ratio: float) -> int:
    """Samples matched to object size: log-interpolated from samples_min (<= 1e-4 of the frame) to samples_max (>= 5 %)."""
    t = (math.log(max(ratio, 1e-12)) - math.log(1e-4)) / (math.log(0.05) - math.log(1e-4))
    t = min(max(t, 0.0), 1.0)
    return int(round(math.exp(math.log(cfg.samples_min) + t * (math.log(cfg.samples_max) - math.log(cfg.samples_min)))))


def capped_samples(samples: int, region_px: int, budget_mpx: float, samples_min: int) -> int:
    """Planned samples, capped so samples x rendered pixels <= budget_mpx megapixel-samples, never below samples_min
    (nor above the plan). Adaptive sampling + OIDN keep large regions clean at low counts; 0 = no cap."""
    budget = float(budget_mpx or 0.0) * 1e6
    if budget <= 0 or region_px <= 0:
        return int(samples)
    return int(max(min(samples, samples_min), min(samples, budget // region_px)))


@dataclass
class Catalog:
    """What plans draw from: categories (sorted), their objects, all objects (for distractors), HDRIs."""

    categories: list[str]
    objects_by_category: dict[str, list[ObjectAsset]]
    distractor_pool: list[ObjectAsset]
    hdris: list[Hdri]
    available_categories: int = 0  # categories of the split before --categories / --num-categories chose


def category_of_index(index: int, categories: list[str]) -> str:
    # round robin: any prefix of the run is balanced over categories
    return categories[index % len(categories)]


def _pose(rng: np.random.Generator, cfg: Config) -> dict:
    return {
        "yaw_deg": float(rng.uniform(0, 360)),
        "tilt_x_deg": float(rng.uniform(-cfg.tilt_max_deg, cfg.tilt_max_deg)),
        "tilt_y_deg": float(rng.uniform(-cfg.tilt_max_deg, cfg.tilt_max_deg)),
    }


def plan_image(cfg: Config, catalog: Catalog, index: int, attempt: int = 0) -> dict:
    rng = image_rng(cfg.seed, index, attempt)
    category = category_of_index(index, catalog.categories)
    pool = catalog.objects_by_category[category]
    obj = pool[int(rng.integers(len(pool)))]
    hdri = catalog.hdris[int(rng.integers(len(catalog.hdris)))]
    width, height = draw_resolution(rng, cfg)
    lo, hi = area_ratio_bounds(cfg, width, height)
    ratio = log_uniform(rng, lo, hi)
    plan = {
        "index": index,
        "attempt": attempt,
        "seed": cfg.seed,
        "render_seed": int(rng.integers(0, 2**31 - 1)),
        "category": category,
        "object": obj.to_dict(),
        "hdri": {"name": hdri.name, "path": hdri.path, "license": hdri.license, "attribution": hdri.attribution},
        "hdri_rotation_deg": float(rng.uniform(0, 360)),
        "hdri_strength": log_uniform(rng, cfg.hdri_strength_min, cfg.hdri_strength_max),
        "width": width,
        "height": height,
        "area_ratio_bounds": [lo, hi],
        "area_ratio_planned": ratio,
        "area_px_planned": ratio * width * height,
        "camera": {
            "focal_mm": log_uniform(rng, cfg.focal_min_mm, cfg.focal_max_mm),
            "sensor_mm": 36.0,
            "azimuth_deg": float(rng.uniform(0, 360)),
            "elevation_deg": float(rng.uniform(cfg.elevation_min_deg, cfg.elevation_max_deg)),
        },
        "pose": _pose(rng, cfg),
        # where the object's box lands within the frame's free room: (0,0) top-left .. (1,1) bottom-right
        "placement_uv": [float(rng.uniform()), float(rng.uniform())],
        "samples": samples_for_ratio(cfg, ratio),
        "distractors": [],
    }
    for _ in range(cfg.distractors):
        d = catalog.distractor_pool[int(rng.integers(len(catalog.distractor_pool)))]
        plan["distractors"].append({
            "object": d.to_dict(),
            "pose": _pose(rng, cfg),
            # in camera space, relative to the target: depth factor (<1 in front), frame position, size factor
            "depth_factor": float(rng.uniform(0.45, 1.8)),
            "frame_uv": [float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.95))],
            "size_factor": log_uniform(rng, 0.5, 1.5),
        })
    return plan


def area_check(cfg: Config, planned_px: float, measured_px: int, occluders: bool) -> str | None:
    """None when the measured mask area matches the plan, else the reason (the image is then re-drawn)."""
    if measured_px <= 0:
        return "target mask is empty"
    slack = 2.0 * math.sqrt(planned_px) + 2.0  # pixel quantisation of small masks
    hi = planned_px * (1 + cfg.area_tolerance) + slack
    lo = planned_px / (1 + cfg.area_tolerance) - slack
    if occluders:
        lo = planned_px * (1 - cfg.max_occlusion) / (1 + cfg.area_tolerance) - slack
    if measured_px > hi:
        return f"mask area {measured_px} px above plan {planned_px:.1f} px (max {hi:.1f})"
    if measured_px < lo:
        return f"mask area {measured_px} px below plan {planned_px:.1f} px (min {max(lo, 0):.1f})"
    return None
