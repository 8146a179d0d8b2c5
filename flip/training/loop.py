"""The training loop (nanoGPT-style: one readable function). `python -m flip.training --help` documents the flags.

Single process: `python -m flip.training --model flip-tiny --data data/x`. Several processes:
`torchrun --nproc_per_node N -m flip.training ...` (NCCL on GPU, gloo on CPU). Each rank draws its own images from the
shared weighted stream, builds its own batch and adapts its own group split (as the authors do); gradients are
averaged by DDP. Only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path


import torch
import torch.nn.functional as F

from segcore.atomic import atomic_write_text

from .checkpoint import atomic_save, export_weights, load_checkpoint, rng_state, set_rng_state
from .data import PATCH_SETS, MixtureSampler, SampleConfig, ShardStream, TrainSet, collate, worker_init_fn
from .groups import GroupBalancer, group_ious
from .optim import ranger
from .validate import held_out, validate

log = logging.getLogger("flip.train")


class ConfigError(ValueError):
    """Stops the run before any work starts."""


def setup_distributed(device_arg: str | None):
    """→ (rank, world, device). Without torchrun's env vars this is one plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg:
        device = torch.device(device_arg)
    else:
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def images_per_process(global_batch: int, masks_per_image: int, world: int) -> int:
    per, rest = divmod(global_batch, masks_per_image * world)
    if rest or per < 1:
        raise ConfigError(f"--global-batch {global_batch} does not split into {world} process(es) × {masks_per_image} "
                          f"masks × whole images; choose a world size dividing {global_batch // masks_per_image}")
    return per


def open_datasets(specs, weights):
    from segcore.datasets import DatasetError, open_dataset

    if not specs:
        raise ConfigError("no training data: pass --data PATH [PATH ...]")
    weights = list(weights) if weights else [1.0] * len(specs)
    if len(weights) != len(specs) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"--data-weights {weights} must give one non-negative weight per dataset ({len(specs)})")
    try:
        adapters = [open_dataset(s) for s in specs]
        if any(a.kind == "sa1b" for a in adapters):  # streamed: never index SA-1B (one json read per image)
            if len(adapters) > 1:
                raise ConfigError("SA-1B shards stream on their own: pass one SA-1B --data folder (or .tar), "
                                  "no other dataset next to it")
            return adapters, weights
        for a in adapters:
            if a.num_images() == 0:
                raise ConfigError(f"dataset {a.name} has no image with objects (ObjaScale folders open their eval "
                                  "split by default: train on DIR#train)")
    except DatasetError as e:
        raise ConfigError(str(e)) from None
    return adapters, weights


def build_model(args, device):
    from flip.variants import create_model

    overrides = {}
    if args.patch_set != "default":
        overrides["patch_sizes"] = PATCH_SETS[args.patch_set]
    if args.initial_pos_emb:
        overrides["pos_emb_all_layers"] = False
    model = create_model(args.model, **overrides)
    source = "random"
    if args.init_weights:  # fine-tuning from anything flip.pretrained loads: a registry name or a file
        from flip.segmenter import load_flip
        from segcore.registry import ModelError

        name_or_path = args.init_weights
        is_file = Path(name_or_path).is_file()
        if not is_file and name_or_path.split(".")[0] != args.model:
            raise ConfigError(f"--init-weights {name_or_path!r}: not a file, and not a name of {args.model!r} "
                              f"(e.g. {args.model}.authors)")
        try:
            loaded, _ = load_flip(args.model if is_file else name_or_path, weights=name_or_path if is_file else None)
        except (FileNotFoundError, ValueError, ModelError) as e:
            raise ConfigError(f"--init-weights {name_or_path}: {e}") from None
        model.load_state_dict(loaded.state_dict())  # strict: the file was checked against the same architecture
        source = loaded.weights_id
        from segcore.hub import sha256

        parent = {"init_weights": name_or_path, "weights_id": source,
                  "files": [{"name": Path(f).name, "sha256": sha256(f)} for f in loaded.weights_paths],
                  "convention": loaded.gaussian_convention, "sampler_compat": loaded.sampler_compat}
        if (parent["convention"], parent["sampler_compat"]) != (args.gaussian_convention, args.sampler_compat):
            log.warning("--init-weights %s was trained with convention %s / sampler rule %s; this run uses %s / %s",
                        name_or_path, parent["convention"], parent["sampler_compat"], args.gaussian_convention,
                        args.sampler_compat)
        model.parent = parent
    return model.to(device), source


def data_fingerprints(specs, adapters) -> dict:
    """{spec: fingerprint} of the training data: the content digest (segcore.datasets.dataset_fingerprint), except
    for streamed SA-1B, whose terabytes are identified by shard names, sizes and mtimes (kind "listing")."""
    from segcore.datasets import dataset_fingerprint
    import hashlib

    out = {}
    for spec, a in zip(specs, adapters):
        if a.kind == "sa1b" and len(a.source.shards) > 64:
            h = hashlib.sha256()
            for sh in a.source.shards:
                st = os.stat(getattr(sh, "path", None) or sh.js)
                h.update(f"{sh.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            out[spec] = {"kind": "listing", "fingerprint": h.hexdigest()[:16]}
        else:
            out[spec] = {"kind": "content", "fingerprint": dataset_fingerprint(spec)}
    return out


def model_config_dict(model) -> dict:
    cfg = model.cfg
    d = asdict(cfg)
    d.pop("extra", None)
    d["patch_sizes"] = list(cfg.patch_sizes)
    return d


def forward_loss(model, batch: dict, device, amp: bool):
    """→ (loss, logits (B, M)). BCE-with-logits mean over every sampled pixel of every object (docs/flip.md §6.1)."""
    from flip.modeling import TokenBatch

    patches = [p.to(device, non_blocking=True).float().div_(255.0) for p in batch["patches"]]
    coords = [c.to(device, non_blocking=True) for c in batch["coords"]]
    tb = TokenBatch(patches, coords, batch["counts"].numpy(), batch["position"].to(device))
    b, m = batch["labels"].shape
    q = batch["mask_coords"].to(device).reshape(b * m, 2)
    labels = batch["labels"].to(device)
    with torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                        enabled=amp):
        logits = model(tb, q, [m] * b)
    logits = logits.float().reshape(b, m)
    return F.binary_cross_entropy_with_logits(logits, labels), logits


class Logger:
    """CSV + TensorBoard, rank 0 only."""

    def __init__(self, out: Path, enabled: bool, resume: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.csv_path = out / "train.csv"
        self.fields = None
        if resume and self.csv_path.exists():
            with open(self.csv_path) as f:
                self.fields = next(csv.reader(f), None)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except Exception as e:  # tensorboard missing: CSV still works
            log.warning("TensorBoard disabled: %s", e)
            self.tb = None

    def log(self, step: int, row: dict, prefix: str = "train"):
        if not self.enabled:
            return
        row = {"step": step, **row}
        if prefix == "train":
            new = self.fields is None
            if new:
                self.fields = list(row)
            with open(self.csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        else:  # eval rows: their own CSV (fixed columns)
            path = self.csv_path.with_name(f"{prefix}.csv")
            new = not path.exists()
            with open(path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["step", "iou", "iou_small", "objects"], extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        if self.tb:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)
            self.tb.flush()


def train_step(ddp, opt, scaler, batch: dict, device, amp: bool):
    """One optimiser step on one batch → (loss, logits), or None when the loss is not finite (batch skipped)."""
    loss, logits = forward_loss(ddp, batch, device, amp)
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        log.warning("non-finite loss %s, batch skipped", loss.item())
        return None
    scaler.scale(loss).backward()
    if amp:
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return loss, logits


def sampled_iou(logits, labels) -> torch.Tensor:
    """Mean IoU over the sampled pixels of each object (the training-time proxy)."""
    pred, lab = logits.detach() > 0, labels > 0.5
    inter, union = (pred & lab).sum(1).float(), (pred | lab).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()


RESUME_KEYS = ("model", "optimizer", "balancer", "step", "epoch", "position", "rng")
MAX_EMPTY_BATCHES = 50  # consecutive batches without one usable object: the data is unreadable, stop


class NoUsableData(RuntimeError):
    """Training cannot go on: image after image fails to load (the error says how many were tried)."""


def train(args) -> dict:
    """Run (or resume) training; returns a summary. The caller's torch thread count and RNG state come back
    afterwards: seeding and threads are the run's own, never a side effect on the caller."""
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
            return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args) -> dict:
    rank, world, device = setup_distributed(args.device)
    if args.global_batch:  # the recipe fixes objects per step; the process count decides the per-process share
        args.batch_images = images_per_process(args.global_batch, args.masks_per_image, world)
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")
    out = Path(args.out)
    if args.patch_set not in PATCH_SETS:
        raise ConfigError(f"unknown --patch-set {args.patch_set!r}; choose from {sorted(PATCH_SETS)}")
    adapters, weights = open_datasets(args.data, args.data_weights)
    resume_path = None
    if args.resume:
        resume_path = out / "last.pt" if args.resume == "auto" else Path(args.resume)
        if not resume_path.is_file():
            if args.resume != "auto":
                raise ConfigError(f"--resume {resume_path}: file not found")
            resume_path = None
    ck = None
    if resume_path:  # read and checked before any work: a damaged or foreign file is a configuration error
        try:
            ck = load_checkpoint(resume_path, map_location="cpu")
        except (OSError, ValueError) as e:
            raise ConfigError(f"--resume {resume_path}: {e}") from None
        missing = [k for k in RESUME_KEYS if not isinstance(ck, dict) or k not in ck]
        if missing:
            raise ConfigError(f"--resume {resume_path}: not a training checkpoint of this trainer (missing {missing})")
    torch.manual_seed(args.seed + rank)
    model, source = build_model(args, device)
    balancer = GroupBalancer(total=args.mask_pixels, memory=args.group_memory, enabled=not args.no_dynamic_sampling)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = ranger(params, lr=args.lr, weight_decay=args.weight_decay, eps=args.eps, k=args.lookahead_k,
                 alpha=args.lookahead_alpha)
    amp = bool(args.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step, epoch, position, wall, objects_seen = 0, 0, 0, 0.0, 0
    if resume_path:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--resume {resume_path}: does not fit this model ({msg})") from None
        for g in opt.param_groups:  # the command line wins (same value → exact continuation)
            g["lr"], g["weight_decay"] = args.lr, args.weight_decay
        balancer.load_state_dict(ck["balancer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        step, epoch, position = int(ck["step"]), int(ck["epoch"]), int(ck["position"])
        trained_rule = ck.get("args", {}).get("sampler_compat", "exact")  # files older than the switch used "exact"
        if trained_rule != args.sampler_compat:
            raise ConfigError(f"--resume {resume_path}: trained with --sampler-compat {trained_rule}, "
                              f"this run asks for {args.sampler_compat}; one model is trained with one rule")
        objects_seen = int(ck.get("objects_seen", 0))
        wall = float(ck.get("wall_time_s", 0.0))
        set_rng_state(ck["rng"])
        source = ck.get("source", source)
        if rank == 0:
            log.info("resumed %s at step %d (epoch %d, position %d)", resume_path, step, epoch, position)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    cfg = SampleConfig(patch_sizes=model.cfg.patch_sizes, min_tokens=args.min_tokens, max_tokens=args.max_tokens,
                       mean_tokens=args.mean_tokens, num_mask_pixels=args.mask_pixels,
                       masks_per_image=args.masks_per_image, augment=not args.no_augment,
                       convention=args.gaussian_convention, sampler_compat=args.sampler_compat)
    streamed = adapters[0].kind == "sa1b"
    if streamed:  # one endless stream per rank; `position` = items this rank consumed (epochs are inside the stream)
        dataset = ShardStream(adapters[0].source, cfg, seed=args.seed, batch_images=args.batch_images, rank=rank,
                              world=world, group_counts=balancer.shared)
        epoch_len, data_size = 0, len(adapters[0].source.shards)
        if resume_path and ck.get("world_size", world) != world:
            log.warning("resumed with %d ranks, the checkpoint had %s: the shard split changes, the stream restarts "
                        "at the same position of a different order", world, ck.get("world_size"))
    else:
        dataset = TrainSet(adapters, cfg, seed=args.seed, rank=rank, group_counts=balancer.shared)
        data_size = sum(dataset.sizes())
        epoch_len = args.epoch_length or data_size
        epoch_len = max(args.batch_images, epoch_len // args.batch_images * args.batch_images)
        sampler = MixtureSampler(dataset.sizes(), weights, seed=args.seed, epoch_length=epoch_len, rank=rank, world=world)
        if position >= epoch_len:  # resumed on a smaller/changed dataset: start the next epoch
            epoch, position = epoch + 1, 0

    def loader(ep, start):
        kw = dict(batch_size=args.batch_images, num_workers=args.workers, collate_fn=collate,
                  worker_init_fn=worker_init_fn, prefetch_factor=args.prefetch if args.workers else None,
                  persistent_workers=False, pin_memory=device.type == "cuda")
        if streamed:
            dataset.set_start(start)
            return torch.utils.data.DataLoader(dataset, **kw)
        sampler.set_epoch(ep, start)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, **kw)

    provenance = {"parent": getattr(model, "parent", None), "data": list(args.data),
                  "data_fingerprint": data_fingerprints(args.data, adapters) if rank == 0 else None}
    if resume_path and ck.get("provenance"):  # the lineage stays; data that changed on resume is kept as history
        old = ck["provenance"]
        provenance["parent"] = old.get("parent") or provenance["parent"]
        provenance["earlier_data"] = list(old.get("earlier_data") or [])
        if rank == 0 and old.get("data_fingerprint") != provenance["data_fingerprint"]:
            provenance["earlier_data"].append({"data": old.get("data"), "data_fingerprint": old.get("data_fingerprint"),
                                               "until_step": step})
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"provenance": provenance, "args": vars(args), "world_size": world, "device": str(device), "init_weights": source,
                "model_config": model_config_dict(model), "datasets": [a.describe() for a in adapters],
                "data_weights": weights, "epoch_length": epoch_len, "streamed": streamed,
                "data_images": [] if streamed else dataset.sizes(), "data_shards": data_size if streamed else None,
                "torch": torch.__version__}
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2, default=str))
    logger = Logger(out, rank == 0, resume=resume_path is not None)
    held = None
    if rank == 0 and args.eval_every and args.eval_data:
        try:
            held = held_out(args.eval_data, args.eval_objects, args.seed)
        except ValueError as e:  # DatasetError: a configuration error, before any step
            raise ConfigError(f"--eval-data: {e}") from None

    def save(path: Path):
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "balancer": balancer.state_dict(),
                     "scaler": scaler.state_dict() if amp else None, "step": step, "epoch": epoch,
                     "position": position, "rng": rng_state(), "args": vars(args), "model_name": args.model,
                     "model_config": model_config_dict(model), "source": source,
                     "convention": args.gaussian_convention, "wall_time_s": wall + time.perf_counter() - t_start,
                     "data_images": data_size, "objects_seen": objects_seen, "world_size": world,
                     "provenance": provenance}, path)

    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, disable=rank != 0 or not args.progress, desc="train", dynamic_ncols=True)
    model.train()
    t_last, objs_since, skipped, empty_in_a_row, failed_items = time.perf_counter(), 0, 0, 0, 0
    t_start = time.perf_counter()
    sums = {"loss": 0.0, "iou": 0.0, "n": 0}
    last = {}
    it = iter(loader(epoch, position))
    while step < args.steps:
        try:
            batch = next(it)
        except StopIteration:
            epoch, position = epoch + 1, 0
            it = iter(loader(epoch, position))
            continue
        position += args.batch_images
        if batch is None:  # every image of the batch failed: nothing to learn from, logged by the dataset
            skipped += 1
            failed_items += args.batch_images
            empty_in_a_row += 1
            if empty_in_a_row >= MAX_EMPTY_BATCHES:
                raise NoUsableData(f"no usable object in {empty_in_a_row} batches in a row ({empty_in_a_row * args.batch_images} "
                                   f"items, up to {SampleConfig.max_retries} images each; {dataset.errors} unreadable images "
                                   "or masks in this process): check the --data images and masks")
            continue
        empty_in_a_row = 0
        failed_items += batch["failed_items"]
        if streamed:
            epoch = max(epoch, batch["epoch"])
        result = train_step(ddp, opt, scaler, batch, device, amp)
        if result is None:
            skipped += 1
            continue
        loss, logits = result
        with torch.no_grad():
            labels = batch["labels"].to(device)
            gi = group_ious(logits.detach(), labels, batch["group_counts"].to(device))
            iou = sampled_iou(logits, labels)
        balancer.update(gi.cpu().numpy())
        step += 1
        nb = batch["labels"].shape[0]
        objs_since += nb
        objects_seen += nb
        sums["loss"] += loss.item()
        sums["iou"] += iou.item()
        sums["n"] += 1
        bar.update(1)
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            last = {"loss": sums["loss"] / sums["n"], "iou_sampled": sums["iou"] / sums["n"],
                    "objects_per_s": objs_since / max(now - t_last, 1e-9) * world, "epoch": epoch,
                    "skipped_batches": skipped, "failed_images": failed_items, "lr": args.lr, "objects_seen": objects_seen,
                    "wall_s": round(wall + now - t_start, 1),
                    **{f"pixels_g{g}": int(c) for g, c in enumerate(balancer.counts())},
                    **{f"ema_iou_g{g}": float(v) for g, v in enumerate(balancer.ema_iou)}}
            logger.log(step, last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", iou=f"{last['iou_sampled']:.3f}",
                            obj_s=f"{last['objects_per_s']:.1f}")
            t_last, objs_since = now, 0
            sums = {"loss": 0.0, "iou": 0.0, "n": 0}
        if rank == 0 and (step % args.ckpt_every == 0 or step == args.steps):
            save(out / "last.pt")
        if rank == 0 and args.keep_every and step % args.keep_every == 0:
            save(out / f"step{step:08d}.pt")
        if rank == 0 and held is not None and step % args.eval_every == 0:
            res = validate(model, held, args.gaussian_convention, args.sampler_compat, args.seed, device)
            if res["objects"]:
                logger.log(step, res, prefix="eval")
                log.info("eval step %d: %s", step, res)
    bar.close()
    if rank == 0 and args.export:
        export_weights(model.state_dict(), args.export, name=args.model, model_config=model_config_dict(model),
                       meta={"step": step, "convention": args.gaussian_convention, "sampler_compat": args.sampler_compat,
                             "source": source, "init_weights": source, "objects_seen": objects_seen,
                             "train_args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, type(None)))},
                             **provenance})
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"step": step, "last": last, "skipped_batches": skipped, "failed_images": failed_items,
            "data_errors": dict(dataset.errors) if streamed else dataset.errors, "position": position, "epoch": epoch}
