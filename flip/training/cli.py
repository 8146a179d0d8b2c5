"""Train FLIP: `python -m flip.training --model flip-tiny --data DATA [DATA ...]` (also under torchrun).

Options come from flags or one config file (--config run.toml / run.yaml, keys = flag names with underscores);
flags given on the command line win. The resolved options are written to OUT/config.json and into every checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import sys

from flip.training.data import PATCH_SETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flip.training", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--config", help="TOML or YAML file with defaults for any flag below")
    a("--model", default="flip-tiny", help="registry name (flip.create_model)")
    a("--data", nargs="+", default=[], help="training datasets (segcore.datasets.open_dataset specs: ObjaScale "
      "folder, COCO json[::images], FLIP .hdf5, optional NAME=...)")
    a("--data-weights", nargs="+", type=float, default=None, help="sampling weight per --data entry (default equal)")
    a("--out", default="runs/flip-train", help="output folder: checkpoints, train.csv, tb/, config.json")
    a("--steps", type=int, default=10000, help="optimiser steps to train for (total, including resumed ones)")
    a("--batch-images", type=int, default=16, help="images per step per process (paper: 16 per GPU)")
    a("--masks-per-image", type=int, default=4, help="objects drawn per image (paper: 4)")
    a("--global-batch", type=int, default=0, help="objects per optimiser step over all processes (paper: 256); sets "
      "--batch-images to global / (masks per image × world size), so the GPU/node count is the only free choice (0: off)")
    a("--epoch-length", type=int, default=0, help="images per epoch per process (0: number of images in the data)")
    a("--workers", type=int, default=0, help="DataLoader worker processes")
    a("--prefetch", type=int, default=1, help="batches prefetched per worker (staleness of the group split)")
    a("--seed", type=int, default=1234, help="run seed; every sample is seeded from (seed, epoch, position, rank)")
    a("--lr", type=float, default=6e-4, help="constant learning rate")
    a("--weight-decay", type=float, default=6e-4, help="decoupled decay p ← p − wd·lr·p on updating steps")
    a("--eps", type=float, default=1e-16, help="RAdam epsilon")
    a("--lookahead-k", type=int, default=6, help="Lookahead sync period")
    a("--lookahead-alpha", type=float, default=0.5, help="Lookahead slow-weight step")
    a("--mask-pixels", type=int, default=2048, help="sampled mask pixels per object")
    a("--min-tokens", type=int, default=32, help="token budget: minimum of the Beta distribution")
    a("--max-tokens", type=int, default=2048, help="token budget: maximum")
    a("--mean-tokens", type=int, default=512, help="token budget: mean")
    a("--group-memory", type=float, default=1000.0, help="EMA memory of the per-group IoU")
    a("--no-dynamic-sampling", action="store_true", help="ablation NoDynamicSampling: fixed equal group split")
    a("--patch-set", default="default", choices=sorted(PATCH_SETS), help="patch sizes (ablations MaxPatch4x4 etc.)")
    a("--initial-pos-emb", action="store_true", help="ablation InitialPosEmb: positional MLPs only in layer 1")
    a("--no-augment", action="store_true", help="no Gaussian augmentation")
    a("--gaussian-convention", default="pixel", choices=["per-axis", "pixel"],
      help="mask Gaussian → model units: the authors' per-axis rule or the exact pixel covariance")
    a("--sampler-compat", default="authors", choices=["authors", "exact"],
      help="patch-sampling rule (docs/sampler.md): the authors' sampler, which produced the published models, or the "
      "exact overlap rule of docs/flip.md §3.5; recorded in checkpoints and exported weights, and used to evaluate them")
    a("--init-weights", default=None, help="fine-tune from weights flip.pretrained can load (name, path, ONNX)")
    a("--resume", nargs="?", const="auto", default=None, help="continue from OUT/last.pt (or a given checkpoint)")
    a("--ckpt-every", type=int, default=500, help="write OUT/last.pt every N steps (and at the end)")
    a("--keep-every", type=int, default=0, help="also keep OUT/stepNNNNNNNN.pt every N steps (0: never)")
    a("--log-every", type=int, default=20, help="CSV/TensorBoard row every N steps")
    a("--eval-data", default=None, help="held-out dataset spec for periodic evaluation through the benchmark runner")
    a("--eval-every", type=int, default=0, help="evaluate every N steps (0: never)")
    a("--eval-objects", type=int, default=200, help="objects per evaluation (fixed random subset)")
    a("--export", default=None, help="at the end, write an inference-only fp16 weights file here")
    a("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    a("--threads", type=int, default=1, help="torch CPU threads per process")
    a("--amp", action="store_true", help="mixed precision (CUDA only; ignored on CPU)")
    a("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def load_config_file(path: str) -> dict:
    from segcore.config import ConfigFileError, load_config_file as load

    try:
        return load(path)
    except ConfigFileError as e:
        raise SystemExit(f"--config: {e}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    pre, _ = p.parse_known_args(argv)
    if pre.config:
        conf = {k.replace("-", "_"): v for k, v in load_config_file(pre.config).items()}
        known = {a.dest for a in p._actions}
        bad = sorted(set(conf) - known)
        if bad:
            raise SystemExit(f"--config {pre.config}: unknown keys {bad}")
        p.set_defaults(**conf)
    args = p.parse_args(argv)
    for k in ("steps", "batch_images", "masks_per_image", "ckpt_every", "log_every", "mask_pixels", "threads"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be ≥ 1")
    if args.global_batch < 0:
        p.error("--global-batch must be ≥ 0")
    if args.workers < 0 or args.prefetch < 1:
        p.error("--workers must be ≥ 0 and --prefetch ≥ 1")
    if not (0 < args.min_tokens <= args.mean_tokens <= args.max_tokens):
        p.error("need 0 < --min-tokens ≤ --mean-tokens ≤ --max-tokens")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from flip.training.loop import ConfigError, NoUsableData, train

    try:
        res = train(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NoUsableData as e:
        print(f"error: stopped: {e}", file=sys.stderr)
        return 1
    logging.getLogger("flip.train").info("finished: %s", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
