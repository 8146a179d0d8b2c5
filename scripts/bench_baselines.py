"""CPU/GPU latency of every box-prompted baseline next to FLIP-Tiny, in one run.

For each model, each repeat on one synthetic image with K objects:
  set_image(image)            → encoder latency per image        (wall time of set_image)
  predict([first prompt])     → + encoder = latency per object on a single-object image
  predict(all K prompts)      → decoder latency per object       (wall time / K)
Medians over --repeats after --warmup runs; each time is also divided by FLIP-Tiny's.
FLIP encodes per object (no image-level encoder), so its set_image is only preprocessing.
Small objects: FLIP-Tiny hierarchical (the authors' weights when $FLIP_REFERENCE_DIR has them, else random) on
--small-objects objects < 1 % of the image, one predict per object (median); each baseline's cost for such an object
is its encoder per image + its decoder per box, and `small_object_x_flip_h` = that ÷ FLIP-Tiny-h's time.
Thread policy as every entry point (segcore/waitpolicy.py): OMP_WAIT_POLICY=PASSIVE unless set; --threads is torch's count.

    python scripts/bench_baselines.py --weights random --out results/bench_baselines.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

from segcore.waitpolicy import apply_wait_policy  # noqa: I001

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)
import numpy as np  # noqa: E402

import baselines  # noqa: E402
from segcore.atomic import atomic_path  # noqa: E402
from segcore.prompt import Prompt  # noqa: E402

from _reference import reference  # noqa: E402  (tests/reference.py: the one FLIP_REFERENCE_DIR setting)

FLIP = "flip-tiny"
SLOW = {"sam-l", "sam-h"}  # ~1 min per forward on 2 CPU cores: --slow-repeats applies


def synthetic_scene(width: int, height: int, objects: int, seed: int):
    """A textured image and `objects` elliptical masks of varied size (explicit seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = (rng.random((height, width, 3)) * 60 + 100).astype(np.float32)
    masks = []
    for _ in range(objects):
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        rx, ry = rng.uniform(0.03, 0.2) * width, rng.uniform(0.03, 0.2) * height
        m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        img[m] = rng.uniform(0, 255, 3)
        masks.append(m)
    return img.clip(0, 255).astype(np.uint8), [Prompt.from_mask(m) for m in masks]


def small_objects(width: int, height: int, objects: int, seed: int):
    """A textured image and `objects` discs of area 0.05-1 % of the image (explicit seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = (rng.random((height, width, 3)) * 60 + 100).astype(np.uint8)
    prompts = []
    for _ in range(objects):
        r = np.sqrt(rng.uniform(0.0005, 0.0099) * width * height / np.pi)
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[m] = rng.integers(0, 255, 3)
        prompts.append(Prompt.from_mask(m))
    return img, prompts


def flip_h_small(width, height, objects, seed, device, warmup: int):
    """Median ms per small object, FLIP-Tiny hierarchical, one object per predict call; (ms, weights_id)."""
    import flip
    onnx = reference.onnx_path()
    seg = flip.create_segmenter(FLIP, weights=str(onnx) if onnx else "random", mode="hierarchical", device=device)
    image, prompts = small_objects(width, height, objects, seed)
    seg.set_image(image)
    for p in prompts[:warmup + 1]:
        seg.predict([p])
    ts = []
    for p in prompts:
        t0 = time.perf_counter()
        seg.predict([p])
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts), seg.weights_id


def create(name: str, weights: str, device):
    if name == FLIP:
        import flip

        return flip.create_segmenter(FLIP, weights=weights, device=device)
    return baselines.create(name, weights=weights, device=device)


def measure(seg, image, prompts, warmup: int, repeats: int) -> dict:
    enc, single, dec = [], [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        seg.set_image(image)
        t1 = time.perf_counter()
        seg.predict(prompts[:1])
        t2 = time.perf_counter()
        seg.predict(prompts)
        t3 = time.perf_counter()
        if i >= warmup:
            enc.append(t1 - t0)
            single.append(t2 - t0)
            dec.append((t3 - t2) / len(prompts))
    return {
        "encoder_ms_per_image": 1e3 * statistics.median(enc),
        "decoder_ms_per_object": 1e3 * statistics.median(dec),
        "single_object_ms": 1e3 * statistics.median(single),
        "runs": repeats,
    }


def write_csv(rows: list[dict], path: Path) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def fmt(v, spec=".1f"):
    return "n/a" if v is None or v == "" else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join([FLIP] + baselines.names()),
                    help="comma-separated model names (default: flip-tiny and all eight baselines)")
    ap.add_argument("--weights", default="random",
                    help='"random" (exact architectures, random init: enough for timing) or "default" (official files)')
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before measuring (default: torch's)")
    ap.add_argument("--width", type=int, default=640, help="synthetic image width in pixels")
    ap.add_argument("--height", type=int, default=480, help="synthetic image height in pixels")
    ap.add_argument("--objects", type=int, default=8, help="objects (boxes) per image for the decoder timing")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before measuring")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    ap.add_argument("--slow-repeats", type=int, default=2, help="timed runs for SAM-L and SAM-H")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    ap.add_argument("--small-objects", type=int, default=60, help="small objects for the FLIP-Tiny-h per-object time")
    ap.add_argument("--out", default="results/bench_baselines.csv", help="CSV written after every model (atomic)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    weights = None if args.weights == "default" else args.weights
    image, prompts = synthetic_scene(args.width, args.height, args.objects, args.seed)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    meta = {**vars(args), "torch_threads": threads, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "loadavg_start": os.getloadavg()}
    print(json.dumps(meta), flush=True)

    flip_small_ms, flip_small_weights = flip_h_small(args.width, args.height, args.small_objects, args.seed + 1,
                                                     args.device, args.warmup)
    meta.update(flip_tiny_h_small_object_ms=flip_small_ms, flip_tiny_h_small_weights=flip_small_weights)
    print(f"FLIP-Tiny hierarchical, objects < 1 %: {flip_small_ms:.2f} ms per object (median of {args.small_objects}, "
          f"weights {flip_small_weights})", flush=True)
    rows = []
    for name in names:
        row = {"model": name}
        try:
            seg = create(name, weights, args.device)
            reps = args.slow_repeats if name in SLOW else args.repeats
            row.update(params_M=seg.num_parameters / 1e6, weights_id=seg.weights_id, **measure(seg, image, prompts, args.warmup, reps))
            del seg
        except Exception as e:  # one model failing (e.g. FLIP not built yet) must not lose the others
            row["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        row.update(threads=threads, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        rows.append(row)
        print(f"{name}: {row}", flush=True)
        write_csv(rows, Path(args.out))

    ref = next((r for r in rows if r["model"] == FLIP and "error" not in r), None)
    for r in rows:
        for k in ("decoder_ms_per_object", "single_object_ms"):
            r[f"{k}_vs_flip"] = r[k] / ref[k] if ref and k in r else ""
        if "error" not in r:
            r["small_object_ms"] = r["encoder_ms_per_image"] + r["decoder_ms_per_object"]
            r["flip_tiny_h_small_object_ms"] = flip_small_ms
            r["small_object_x_flip_h"] = r["small_object_ms"] / flip_small_ms
    write_csv(rows, Path(args.out))
    Path(args.out).with_suffix(".json").write_text(json.dumps({**meta, "loadavg_end": os.getloadavg()}, indent=1))

    print(f"\n{args.width}x{args.height} image, {args.objects} objects, {threads} threads, weights={args.weights}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {meta['loadavg_start'][0]:.2f} (start) → "
          f"{os.getloadavg()[0]:.2f} (end)")
    print(f"FLIP-Tiny hierarchical per small object (< 1 %): {flip_small_ms:.2f} ms")
    print("| model | params (M) | encoder ms/image | decoder ms/object | single-object ms | single ÷ FLIP-Tiny | decoder ÷ FLIP-Tiny |"
          " small object: encoder + decoder ms | ÷ FLIP-Tiny-h small |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | n/a | n/a ({r['error'][:60]}) | | | | | | |")
            continue
        print(f"| {r['model']} | {r['params_M']:.2f} | {fmt(r['encoder_ms_per_image'])} | {fmt(r['decoder_ms_per_object'])} | "
              f"{fmt(r['single_object_ms'])} | {fmt(r['single_object_ms_vs_flip'], '.2f')} | {fmt(r['decoder_ms_per_object_vs_flip'], '.2f')} | "
              f"{fmt(r['small_object_ms'])} | {fmt(r['small_object_x_flip_h'], '.0f')}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
