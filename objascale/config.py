"""ObjaScale configuration: one flat dataclass, presets, TOML loading, validation.

Every field is a CLI flag (`--area-ratio-min`, ...) and a TOML key (`area_ratio_min = ...`). Precedence:
preset < config file < flags. The resolved config is written into the dataset's metadata.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SEED = 20250204  # recorded in every output; the paper's arXiv month, nothing more


class ConfigError(ValueError):
    """A configuration that cannot run: stops the run before any work starts."""


@dataclass
class Config:
    # what and how many
    dataset_name: str = ""  # "" = derived from the source and preset (objascale-mini, objascale-objaverse, objascale-<folder>)
    num_images: int = 28
    seed: int = DEFAULT_SEED
    split: str = "eval"  # which object split to render from: train | eval | all (every object)
    eval_fraction: float = 0.2  # fraction of object ids (by hash) reserved for evaluation
    # objects
    object_source: str = "sweethome3d"  # sweethome3d | local | objaverse
    object_dir: str = ""  # local source: folder of GLB/GLTF/OBJ/FBX/PLY/STL (categories from subfolders or manifest)
    object_manifest: str = ""  # local source: optional CSV/JSON manifest (path, category, license, attribution)
    objaverse_dir: str = ""  # objaverse source: the package's cache folder (default ~/.objaverse/hf-objaverse-v1)
    objaverse_download: bool = False  # objaverse source: download the objects through the objaverse package (opt-in)
    objaverse_per_category: int = 10  # with objaverse_download: objects per category of the committed list
    objaverse_processes: int = 4  # with objaverse_download: parallel downloads (objaverse.load_objects)
    sweethome3d_dir: str = ""  # sweethome3d source: cache (default ~/.cache/objascale/sweethome3d)
    num_categories: int = 0  # 0 = every category; else the N largest categories of the split
    categories: list[str] = field(default_factory=list)  # explicit category names (overrides num_categories)
    images_per_category: int = 0  # >0: num_images = num_categories × images_per_category
    distractors: int = 0  # extra objects per image (occlusion, clutter)
    max_occlusion: float = 0.5  # with distractors: visible target area may drop to (1-max_occlusion) × plan
    # environments
    hdri_dirs: list[str] = field(default_factory=list)  # folders of .exr/.hdr (e.g. Poly Haven downloads), any size
    no_builtin_hdris: bool = False  # use only hdri_dirs, not the 8 HDRIs inside the bpy wheel
    hdri_strength_min: float = 0.6
    hdri_strength_max: float = 1.6
    # image size
    min_side: int = 256  # the long side is drawn log-uniformly in [min_side, max_side]
    max_side: int = 640
    aspect_min: float = 0.6  # short side / long side drawn uniformly in [aspect_min, 1]
    portrait_prob: float = 0.3
    # object size in frame
    area_ratio_min: float = 1e-6
    area_ratio_max: float = 0.25
    min_pixels: int = 16  # floor on planned mask pixels: per image the min ratio is max(area_ratio_min, min_pixels/(W*H))
    area_tolerance: float = 0.3  # relative tolerance of measured vs planned area (plus a sqrt(px) slack)
    max_attempts: int = 6  # re-draws per image before it is skipped
    max_outside: float = 0.0  # fraction of the object's box allowed outside the frame (0 = fully in frame)
    # camera and pose
    focal_min_mm: float = 24.0
    focal_max_mm: float = 85.0
    elevation_min_deg: float = -10.0
    elevation_max_deg: float = 50.0
    tilt_max_deg: float = 20.0
    # rendering
    device: str = "auto"  # auto | cpu | gpu
    samples_min: int = 8  # samples for the smallest objects ...
    samples_max: int = 32  # ... and for the largest; log-interpolated on the area ratio
    adaptive_threshold: float = 0.05
    denoiser: str = "auto"  # auto (OIDN when available) | oidn | none
    max_bounces: int = 4
    threads: int = 0  # Cycles threads per worker (0 = Blender's choice)
    region_render: bool = True  # small objects: full quality only on their screen region (see blender/render.py)
    region_min_saving: float = 4.0  # use the region render when frame area / region area exceeds this
    background_samples: int = 8  # samples of the full frame when region rendering without analytic_background
    analytic_background: bool = True  # region rendering: background = exact HDRI lookup in numpy, objects composited
    sample_budget_mpx: float = 0.0  # cap samples x rendered megapixels (0 = no cap; never below samples_min)
    jpeg_above_pixels: int = 4_000_000  # images with more pixels are written as JPEG
    jpeg_quality: int = 95
    probe_side: int = 160  # low-resolution index renders that measure the projected area
    # execution
    workers: int = 1
    chunk_size: int = 8  # images per fresh Blender process
    timeout_s: float = 900.0  # per image
    executor: str = "local"  # local | slurm
    shard: str = ""  # "k/n": render only indices i with i % n == k
    slurm_shards: int = 8
    slurm_partition: str = ""
    slurm_time_min: int = 240
    slurm_cpus: int = 4
    retry_skipped: bool = False
    write_hdf5: bool = True

    # ------------------------------------------------------------------
    def validate(self) -> "Config":
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(self.num_images >= 0, f"num_images must be >= 0, got {self.num_images}")
        need(isinstance(self.seed, int) and 0 <= self.seed < 2**63,
             f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        need(self.split in ("train", "eval", "all"), f"split must be train, eval or all, got {self.split!r}")
        need(0.0 <= self.eval_fraction <= 1.0, f"eval_fraction must be in [0, 1], got {self.eval_fraction}")
        need(self.objaverse_per_category >= 1 and self.objaverse_processes >= 1,
             "objaverse_per_category and objaverse_processes must be >= 1")
        need(not self.objaverse_download or self.object_source == "objaverse",
             "--objaverse-download needs --object-source objaverse")
        need(self.min_pixels >= 1, f"min_pixels must be >= 1, got {self.min_pixels}")
        need(self.object_source in ("sweethome3d", "local", "objaverse"), f"unknown object_source {self.object_source!r}")
        need(self.object_source != "local" or bool(self.object_dir), "object_source=local needs --object-dir")
        need(0.0 < self.area_ratio_min <= self.area_ratio_max <= 1.0,
             f"need 0 < area_ratio_min <= area_ratio_max <= 1, got {self.area_ratio_min}, {self.area_ratio_max}")
        need(8 <= self.min_side <= self.max_side <= 16384, f"need 8 <= min_side <= max_side <= 16384, got {self.min_side}, {self.max_side}")
        need(0.1 <= self.aspect_min <= 1.0, f"aspect_min must be in [0.1, 1], got {self.aspect_min}")
        need(0 < self.hdri_strength_min <= self.hdri_strength_max, "need 0 < hdri_strength_min <= hdri_strength_max")
        need(0 < self.focal_min_mm <= self.focal_max_mm, "need 0 < focal_min_mm <= focal_max_mm")
        need(1 <= self.samples_min <= self.samples_max, "need 1 <= samples_min <= samples_max")
        need(self.device in ("auto", "cpu", "gpu"), f"device must be auto|cpu|gpu, got {self.device!r}")
        need(self.denoiser in ("auto", "oidn", "none"), f"denoiser must be auto|oidn|none, got {self.denoiser!r}")
        need(self.max_attempts >= 1, "max_attempts must be >= 1")
        need(self.workers >= 1 and self.chunk_size >= 1, "workers and chunk_size must be >= 1")
        need(self.executor in ("local", "slurm"), f"executor must be local|slurm, got {self.executor!r}")
        need(self.distractors >= 0, "distractors must be >= 0")
        need(0.0 <= self.max_occlusion < 1.0, "max_occlusion must be in [0, 1)")
        need(0.0 <= self.max_outside < 1.0, "max_outside must be in [0, 1)")
        need(self.timeout_s > 0, "timeout_s must be > 0")
        need(1 <= self.jpeg_quality <= 100, "jpeg_quality must be in [1, 100]")
        need(self.sample_budget_mpx >= 0, "sample_budget_mpx must be >= 0 (0 = no cap)")
        if self.shard:
            parse_shard(self.shard)
        if not self.dataset_name:
            self.dataset_name = default_dataset_name(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def plan_hash(self) -> str:
        """Hash of the fields that decide what image i is; runs with another hash must not share a folder."""
        d = {k: v for k, v in self.to_dict().items() if k in PLAN_FIELDS}
        if self.objaverse_download:  # which objects are fetched decides the catalogue (absent: older hashes unchanged)
            d["objaverse_per_category"] = self.objaverse_per_category
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# fields that change the content of image i (everything else: how/where it runs, how many images, or render-quality
# knobs such as analytic_background and sample_budget_mpx that change noise, not what the image shows; a new field
# here would change the hash of every existing folder and refuse its resume)
PLAN_FIELDS = {
    "seed", "split", "eval_fraction", "object_source", "object_dir", "object_manifest", "objaverse_dir",
    "num_categories", "categories", "images_per_category", "distractors", "max_occlusion", "hdri_dirs", "no_builtin_hdris",
    "hdri_strength_min", "hdri_strength_max", "min_side", "max_side", "aspect_min", "portrait_prob",
    "area_ratio_min", "area_ratio_max", "min_pixels", "area_tolerance", "max_attempts", "max_outside",
    "focal_min_mm", "focal_max_mm", "elevation_min_deg", "elevation_max_deg", "tilt_max_deg", "samples_min",
    "samples_max", "adaptive_threshold", "denoiser", "max_bounces", "region_render", "region_min_saving",
    "background_samples", "jpeg_above_pixels", "jpeg_quality", "probe_side",
}

PRESETS: dict[str, dict] = {
    # minutes on 2 CPU cores: 28 images, 256-640 px
    "mini": dict(num_images=28, min_side=256, max_side=640, samples_min=8,
                 samples_max=32, chunk_size=7, num_categories=7),
    # the paper's scale: 68 categories × 150 images, several thousand px per side
    "paper": dict(num_categories=68, images_per_category=150, num_images=10200,
                  min_side=1024, max_side=4096, samples_min=16, samples_max=128, chunk_size=10,
                  sample_budget_mpx=16.0),
}


def parse_shard(s: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in s.split("/"))
    except ValueError:
        raise ConfigError(f"shard must look like k/n (e.g. 0/4), got {s!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"shard k/n needs 0 <= k < n, got {s!r}")
    return k, n


def load_toml(path: str | Path) -> dict:
    """A TOML or YAML config file (the suite's one loader, segcore.config); a [objascale] table or top-level keys."""
    from segcore.config import ConfigFileError, load_config_file

    try:
        data = load_config_file(path)
    except ConfigFileError as e:
        raise ConfigError(str(e)) from None
    return data.get("objascale", data)


def build_config(preset: str | None = None, file_values: dict | None = None, overrides: dict | None = None) -> Config:
    values: dict = {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(Config)}
    for src in (file_values or {}, overrides or {}):
        bad = set(src) - known
        if bad:
            raise ConfigError(f"unknown config keys: {sorted(bad)}")
        values.update({k: v for k, v in src.items() if v is not None})
    cfg = Config(**values)
    if cfg.images_per_category > 0 and (overrides or {}).get("num_images") is None and cfg.num_categories > 0:
        cfg.num_images = cfg.num_categories * cfg.images_per_category
    if not cfg.dataset_name:
        cfg.dataset_name = default_dataset_name(cfg, preset)
    return cfg.validate()


def default_dataset_name(cfg: Config, preset: str | None = None) -> str:
    """objascale[-mini] (Sweet Home 3D), objascale-objaverse[-mini], objascale-<folder name>[-mini] (local)."""
    if cfg.object_source == "local":
        folder = Path(cfg.object_dir.rstrip("/\\")).name or "local"
        name = "objascale-" + (re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-") or "local")
    else:
        name = {"sweethome3d": "objascale", "objaverse": "objascale-objaverse"}.get(cfg.object_source, "objascale")
    return name + ("-mini" if preset == "mini" else "")


def area_floor_range(cfg: Config) -> tuple[float, float]:
    """The min_pixels floor as an area ratio on the largest (max_side²) and the smallest possible image."""
    small = cfg.min_side * max(8, round(cfg.min_side * cfg.aspect_min))
    return cfg.min_pixels / float(cfg.max_side * cfg.max_side), cfg.min_pixels / float(small)
