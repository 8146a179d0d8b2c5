"""Training throughput (optimiser steps and objects per second) of FLIP with 0, 1 and 2 DataLoader workers.

    python scripts/bench_train.py --data data/objascale-mini --model flip-tiny --batch-images 16 --steps 10 --rounds 3

Each setting runs the real pipeline (benchmark adapter → fovea sampler → packed forward/backward → Ranger step)
for --warmup steps, then times --steps steps. Settings are interleaved (round 1: 0, 1, 2 workers; round 2: 0, 1,
2 ...) so a change in the machine's load hits all of them; prints every run and the median per setting, with the
load average. Nothing is asserted.
"""
from __future__ import annotations

from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from flip.training.data import MixtureSampler, SampleConfig, TrainSet, collate, worker_init_fn  # noqa: E402
from flip.training.groups import GroupBalancer, group_ious  # noqa: E402
from flip.training.loop import train_step  # noqa: E402
from flip.training.optim import ranger  # noqa: E402
from flip.variants import create_model  # noqa: E402
from segcore.datasets import open_dataset  # noqa: E402


def run(args, workers: int) -> tuple[float, float, int]:
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(args.model).to(device)
    opt = ranger(model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    bal = GroupBalancer()
    ds = TrainSet([open_dataset(args.data)], SampleConfig(masks_per_image=args.masks_per_image), seed=args.seed,
                  group_counts=bal.shared)
    n = args.batch_images * (args.steps + args.warmup)
    sampler = MixtureSampler(ds.sizes(), [1.0], seed=args.seed, epoch_length=n)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_images, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, worker_init_fn=worker_init_fn,
                                         prefetch_factor=2 if workers else None)
    objs, t0, steps = 0, None, 0
    for i, batch in enumerate(loader):
        if i == args.warmup:
            t0, objs = time.perf_counter(), 0
        if batch is None:
            continue
        result = train_step(model, opt, scaler, batch, device, amp=False)
        if result is None:
            continue
        _, logits = result
        bal.update(group_ious(logits.detach(), batch["labels"].to(device), batch["group_counts"].to(device)).cpu().numpy())
        objs += batch["labels"].shape[0]
        steps += i >= args.warmup
    dt = time.perf_counter() - t0
    return objs / dt, dt / max(steps, 1), objs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/objascale-mini", help="dataset spec (segcore.datasets.open_dataset)")
    p.add_argument("--model", default="flip-tiny", help="registry name")
    p.add_argument("--batch-images", type=int, default=4, help="images per step")
    p.add_argument("--masks-per-image", type=int, default=4, help="objects per image")
    p.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts to compare")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    p.add_argument("--seed", type=int, default=0, help="run seed")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the worker counts")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}, threads {args.threads}, model {args.model}, "
          f"{args.batch_images} images x {args.masks_per_image} masks per step, data {args.data}")
    print("round,workers,steps_per_s,objects_per_s,s_per_step,objects_timed,load_avg_1min")
    got = {w: [] for w in args.workers}
    for r in range(args.rounds):
        for w in args.workers:
            ops, sps, n = run(args, w)
            got[w].append(1.0 / sps)
            print(f"{r},{w},{1.0 / sps:.3f},{ops:.1f},{sps:.3f},{n},{os.getloadavg()[0]:.1f}", flush=True)
    print("# median over rounds: " + ", ".join(f"{w} workers {statistics.median(v):.3f} steps/s" for w, v in got.items()))


if __name__ == "__main__":
    main()
