"""Fovea sampler speed: ms per object for isotropic objects of σ = 1, 3, 10, 30, 100 px on a 1024×1024 image.

N = 512, τ = 2.67, c = 1.44, patch sizes (1, 2, 4, 8, 16) (the evaluation setting, spec §7.1). Prints the median
over repeats of the mean wall time per object (and CPU time for the single-call C loop), for the C extension (single calls and the batched call) and NumPy.

    python scripts/bench_sampler.py [--repeats 7] [--objects 50] [--numpy-objects 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flip import sampler as S

SIGMAS = (1, 3, 10, 30, 100)


def per_object_ms(fn, n_objects: int, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) / n_objects * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats; the median is reported")
    ap.add_argument("--objects", type=int, default=50, help="objects (seeds) per repeat for the C backend")
    ap.add_argument("--numpy-objects", type=int, default=3, help="objects per repeat for the NumPy backend (slow)")
    ap.add_argument("--threads", type=int, default=2, help="threads for the threaded C run (GIL released)")
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels")
    ap.add_argument("--tokens", type=int, default=512, help="token budget N")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    mid = args.size / 2
    print(f"# {platform.processor() or platform.machine()}, image {args.size}x{args.size}, N={args.tokens}, tau=2.67, c=1.44, "
          f"median of {args.repeats} repeats")
    # wall time, plus the process CPU time of the single-call loop: the latter is what to compare on a shared machine
    print(f"{'sigma_px':>8} {'tokens':>7} {'C ms/obj':>9} {'C cpu':>9} {'C many':>9} {f'C {args.threads}thr':>9} {'NumPy ms/obj':>12}")
    for sigma in SIGMAS:
        g = (mid, mid, float(sigma), float(sigma), 0.0, 1.0)
        seeds = list(range(args.objects))
        one = lambda: [S.sample_patches(img, g, args.tokens, seed=s) for s in seeds]  # noqa: E731
        c_ms = per_object_ms(one, args.objects, args.repeats)
        cpu_ms = per_object_ms(one, args.objects, args.repeats, clock=time.process_time)
        gs = np.tile(np.array(g), (args.objects, 1))
        many_ms = per_object_ms(lambda: S.sample_patches_many(img, gs, args.tokens, seeds=seeds), args.objects, args.repeats)
        with ThreadPoolExecutor(args.threads) as pool:
            thr_ms = per_object_ms(
                lambda: list(pool.map(lambda s: S.sample_patches(img, g, args.tokens, seed=s), seeds)), args.objects, args.repeats
            )
        nseeds = list(range(args.numpy_objects))
        np_ms = per_object_ms(
            lambda: [S.sample_patches(img, g, args.tokens, seed=s, backend="numpy") for s in nseeds], args.numpy_objects,
            max(1, args.repeats // 2),
        )
        tokens = S.sample_patches(img, g, args.tokens, seed=0).total
        print(f"{sigma:>8} {tokens:>7} {c_ms:>9.3f} {cpu_ms:>9.3f} {many_ms:>9.3f} {thr_ms:>9.3f} {np_ms:>12.1f}")


if __name__ == "__main__":
    main()
