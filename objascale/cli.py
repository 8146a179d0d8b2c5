"""`python -m objascale`: render an ObjaScale dataset (resumable; rerun the same command to continue)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from .config import PRESETS, Config, ConfigError, build_config, load_toml

HELP = {
    "dataset_name": "dataset name (HDF5 file is {dataset_name}-{split}-v1.hdf5); empty = derived from the source: "
                    "objascale[-mini], objascale-objaverse[-mini], objascale-<object folder>[-mini]",
    "num_images": "number of images (overrides the preset)",
    "seed": "run seed; image i uses Generator(SeedSequence([seed, i, attempt]))",
    "split": "object split to render from: train or eval (disjoint object ids by hash), or all (every object)",
    "eval_fraction": "fraction of object ids in the eval split",
    "object_source": "sweethome3d (built-in, offline), local (--object-dir) or objaverse (the objaverse package's cache)",
    "object_dir": "local source: folder of GLB/GLTF/OBJ/FBX/PLY/STL; category = first subfolder",
    "object_manifest": "local source: CSV/JSON manifest with path, category[, license, attribution, name, up_axis (Y|Z), "
                       "scale_to_m or units (m|cm|mm|in|ft), rotation (3 Euler XYZ degrees or 9 row-major numbers)]",
    "objaverse_dir": "objaverse source: the package's cache folder hf-objaverse-v1 (default ~/.objaverse/hf-objaverse-v1)",
    "objaverse_download": "objaverse source: download N objects per category of the committed 68-category LVIS list "
                          "(objascale/assets/objaverse_categories.txt) through the objaverse package; off = cache only",
    "objaverse_per_category": "with --objaverse-download: objects per category (within the split)",
    "objaverse_processes": "with --objaverse-download: parallel downloads",
    "sweethome3d_dir": "Sweet Home 3D cache (default ~/.cache/objascale/sweethome3d; installed there if missing)",
    "num_categories": "render the N largest categories of the split (0 = all; with --objaverse-download the first N "
                      "of the committed list)",
    "categories": "explicit category names (override --num-categories)",
    "images_per_category": "if > 0 and --num-images not given: num_images = num_categories x this",
    "distractors": "extra objects per image for occlusion/clutter; the target mask is its visible part",
    "max_occlusion": "with distractors: largest accepted fraction of the target hidden",
    "hdri_dirs": "folders of .exr/.hdr environments (any size, e.g. Poly Haven / HDRI Haven downloads); "
                 "a NAME.license file next to NAME.hdr gives its licence",
    "no_builtin_hdris": "use only --hdri-dirs, not the 8 CC0 Poly Haven HDRIs shipped in the bpy wheel",
    "hdri_strength_min": "HDRI strength, log-uniform lower bound",
    "hdri_strength_max": "HDRI strength, log-uniform upper bound",
    "min_side": "long image side, log-uniform lower bound (px)",
    "max_side": "long image side, log-uniform upper bound (px)",
    "aspect_min": "short/long side ratio drawn uniformly in [aspect_min, 1]",
    "portrait_prob": "probability of a portrait image",
    "area_ratio_min": "mask area / image area, log-uniform lower bound",
    "area_ratio_max": "mask area / image area, log-uniform upper bound",
    "min_pixels": "floor on planned mask pixels: per image the smallest area ratio is max(area-ratio-min, "
                  "min-pixels / (W*H)); at 640x480 the default 16 px is 5.2e-5, so 1e-5 needs --min-pixels 4",
    "area_tolerance": "accepted relative deviation of measured vs planned mask area",
    "max_attempts": "re-draws per image (own derived seeds) before it is skipped",
    "max_outside": "fraction of the object's box allowed outside the frame",
    "focal_min_mm": "focal length lower bound (36 mm sensor)",
    "focal_max_mm": "focal length upper bound",
    "elevation_min_deg": "camera elevation lower bound",
    "elevation_max_deg": "camera elevation upper bound",
    "tilt_max_deg": "random object tilt about x and y, +- this",
    "device": "auto (GPU when Cycles finds one), cpu or gpu",
    "samples_min": "Cycles samples for the smallest objects",
    "samples_max": "Cycles samples for the largest objects",
    "adaptive_threshold": "Cycles adaptive sampling noise threshold",
    "denoiser": "auto/oidn (OpenImageDenoise) or none",
    "max_bounces": "Cycles max light bounces",
    "threads": "Cycles threads per worker (0 = all cores)",
    "region_render": "Cycles renders only the objects' screen region; the rest is the plain HDRI (see analytic_background)",
    "region_min_saving": "with --no-analytic-background: use region rendering when frame area / region area >= this",
    "background_samples": "samples of the full-frame Cycles background pass (only with --no-analytic-background)",
    "analytic_background": "background = exact per-pixel HDRI lookup in numpy, objects composited over it with their "
                           "alpha (off: a low-sample Cycles pass of the full frame, only when region_min_saving is met)",
    "sample_budget_mpx": "cap Cycles samples so samples x rendered megapixels <= this (0 = no cap; floor samples_min)",
    "jpeg_above_pixels": "write JPEG instead of PNG above this many pixels",
    "jpeg_quality": "JPEG quality",
    "probe_side": "long side of the low-resolution probe renders that measure projected area",
    "workers": "parallel Blender worker processes",
    "chunk_size": "images per fresh Blender process",
    "timeout_s": "per-image timeout (s); a timed-out image is skipped with the reason",
    "executor": "local or slurm (submitit job array, shards merged at the end)",
    "shard": "k/n: render only images with index % n == k",
    "slurm_shards": "number of Slurm array tasks",
    "slurm_partition": "Slurm partition",
    "slurm_time_min": "Slurm time limit per task (min)",
    "slurm_cpus": "CPUs per Slurm task",
    "retry_skipped": "re-render images previously skipped",
    "write_hdf5": "also write the FLIP HDF5 export",
}


DEFAULT_PRESET = "mini"


def _default_text(name: str, default) -> str:
    """What a run without the flag uses: the default preset's value when it sets one, else the field default."""
    if name in PRESETS[DEFAULT_PRESET]:
        others = "; ".join(f"--preset {k}: {v[name]!r}" for k, v in sorted(PRESETS.items()) if k != DEFAULT_PRESET and name in v)
        return f"(default {PRESETS[DEFAULT_PRESET][name]!r} from --preset {DEFAULT_PRESET}" + (f"; {others}" if others else "") + ")"
    others = "; ".join(f"--preset {k}: {v[name]!r}" for k, v in sorted(PRESETS.items()) if name in v)
    return f"(default {default!r}" + (f"; {others}" if others else "") + ")"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m objascale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                   help="base settings, overridden by --config and flags: mini (default; 28 images, 7 categories, minutes) "
                        "or paper (68 categories x 150 = 10,200 images, 1024-4096 px)")
    p.add_argument("--config", help="TOML file with any of the keys below (top level or an [objascale] table)")
    p.add_argument("--out", required=True, help="dataset folder (created; rerun with the same settings to resume)")
    p.add_argument("--merge-only", action="store_true", help="only rebuild manifest, annotations.json and HDF5 from what is rendered")
    p.add_argument("--status", action="store_true", help="print done/skipped/pending counts and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    defaults = Config()
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kw = dict(dest=f.name, default=None, help=(HELP.get(f.name, f.name) + " " + _default_text(f.name, default)).replace("%", "%%"))
        if isinstance(default, bool) and f.name.startswith("no_"):
            # BooleanOptionalAction would read "--no-builtin-hdris" as the negation of "--builtin-hdris" (False)
            p.add_argument(flag, action="store_true", **kw)
        elif isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, list):
            p.add_argument(flag, nargs="*", **kw)
        else:
            p.add_argument(flag, type=type(default), **kw)
    return p


def effective_settings(cfg: Config, preset: str, catalog, overrides: dict) -> list[str]:
    """The settings that decide what is rendered, printed at start (presets apply silently otherwise)."""
    from .assets.objects import split_of
    from .config import area_floor_range

    n_avail = catalog.available_categories or len(catalog.categories)
    n_obj = sum(len(v) for v in catalog.objects_by_category.values())
    pool = catalog.distractor_pool  # every object of the source, all splits
    n_source, n_source_cats = len(pool), len({o.category for o in pool})
    in_split = n_source if cfg.split == "all" else sum(
        1 for o in pool if split_of(o.id, cfg.eval_fraction) == cfg.split)
    why = ""
    if len(catalog.categories) < n_avail and not cfg.categories:
        src = "flag" if overrides.get("num_categories") is not None else f"--preset {preset}"
        why = f" (--num-categories {cfg.num_categories} from {src}; --num-categories 0 renders all)"
    n_builtin = sum(h.name.startswith("polyhaven/") for h in catalog.hdris)
    lines = [
        f"preset {preset}, dataset {cfg.dataset_name}, {cfg.num_images} images, seed {cfg.seed}, split {cfg.split}",
        f"objects: source {cfg.object_source} holds {n_source} objects in {n_source_cats} categories"
        + ("" if cfg.split == "all" else
           f"; split {cfg.split} keeps {in_split} of them (--eval-fraction {cfg.eval_fraction:g}), leaving out "
           f"{n_source - in_split}: --split all renders every object"),
        f"rendering {len(catalog.categories)} of {n_avail} categories of the split{why}, {n_obj} objects: "
        + ", ".join(catalog.categories[:12]) + (" ..." if len(catalog.categories) > 12 else ""),
        f"HDRIs: {len(catalog.hdris)} ({n_builtin} built-in, {len(catalog.hdris) - n_builtin} from --hdri-dirs)",
        f"image long side {cfg.min_side}-{cfg.max_side} px, area ratio {cfg.area_ratio_min:g}..{cfg.area_ratio_max:g}, "
        f"samples {cfg.samples_min}-{cfg.samples_max}, {cfg.workers} worker(s)",
    ]
    f_lo, f_hi = area_floor_range(cfg)
    if f_hi > cfg.area_ratio_min:
        limit_px = cfg.min_pixels / cfg.area_ratio_min  # frames with fewer pixels than this are affected
        which = ("every frame" if f_lo > cfg.area_ratio_min else
                 f"frames under {limit_px:,.0f} px (about {limit_px ** 0.5:,.0f}x{limit_px ** 0.5:,.0f}); larger frames "
                 f"reach --area-ratio-min")
        lines.append(f"area floor: --min-pixels {cfg.min_pixels} raises the smallest area ratio above --area-ratio-min "
                     f"{cfg.area_ratio_min:g} on {which}: min-pixels/(W*H) goes from "
                     f"{max(f_lo, cfg.area_ratio_min):.2g} up to {f_hi:.2g} on the smallest frame; lower --min-pixels to reach it")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="objascale: %(message)s")
    from .runner import FatalRunError, merge, prepare, render, run_slurm

    if not args.out.strip():  # an unset $OUT: never render into the current folder
        print("objascale: configuration error: --out is empty; name the dataset folder", file=sys.stderr)
        return 2
    # absolute before any worker starts: workers run in their own processes, and a relative job path would be
    # looked up from wherever they run
    out = Path(os.path.abspath(os.path.expanduser(args.out)))
    existed = out.exists()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    try:
        cfg = build_config(args.preset, load_toml(args.config) if args.config else None, overrides)
        if args.status:
            from .export import status_counts

            print(status_counts(out, cfg.num_images))
            return 0
        catalog, _ = prepare(cfg, out, cli={"argv": sys.argv[1:] if argv is None else argv, "preset": args.preset,
                                             "config_file": args.config})
    except ConfigError as e:
        print(f"objascale: configuration error: {e}", file=sys.stderr)
        if not existed and out.is_dir():  # a configuration error leaves no folder behind
            for leftover in (out / "logs", out):
                try:
                    leftover.rmdir()  # only when empty: nothing else is ever removed
                except OSError:
                    pass
        return 2
    for line in effective_settings(cfg, args.preset, catalog, overrides):
        print("objascale: " + line)
    try:
        if not args.merge_only:
            if cfg.executor == "slurm":
                run_slurm(cfg, out)
            else:
                stats = render(cfg, out, catalog)
                if stats["todo"]:
                    print(f"objascale: rendered {stats['rendered']}, skipped {stats['skipped']} in {stats['seconds']:.0f} s "
                          f"({3600 * stats['rendered'] / max(stats['seconds'], 1e-9):.0f} images/hour)")
                if stats.get("io_failed"):
                    print(f"objascale: {stats['io_failed']} images hit I/O errors and stay pending; rerun the same command "
                          f"to render them")
        summary = merge(cfg, out, catalog.categories)
        for w in summary.get("warnings", []):
            print(f"objascale: warning: {w}")
    except FatalRunError as e:
        print(f"objascale: stopped: {e}. Finished images are kept; rerun the same command to continue.", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"objascale: stopped: cannot write outputs in {out}: {e}. Rerun to continue.", file=sys.stderr)
        return 3
    print(f"objascale: {summary['manifest_counts']}; annotations.json" + (f", {Path(summary['hdf5']).name}" if summary["hdf5"] else ""))
    return 0
