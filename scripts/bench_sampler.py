"""Fovea sampler speed: ms per object, compat="exact" vs compat="authors" vs the authors' own C sampler.

Isotropic objects of σ = 1, 3, 10, 30, 100 px at the centre of a 1024×1024 noise image, N = 512, τ = 2.67,
c = 1.44, patch sizes (1, 2, 4, 8, 16) (the evaluation setting, docs/flip.md §7.1). The three samplers see the same float32
Gaussian (flip.sampler.authors_gaussian_px) and run interleaved (the order rotates every repeat), so machine load
hits them alike. Reported: the median over repeats of wall ms per object, single calls at 1 thread, and the same
objects split over 2 threads (ours release the GIL; theirs holds it). Also the process CPU ms per object of the
1-thread runs, which is what to compare on a shared machine.

The authors' sampler is compiled from $FLIP_REFERENCE_DIR/authors-sampler/ext (or --authors-ext) into a temporary
folder outside the repository and loaded from there; nothing of it is kept. Without it, its columns read n/a.

    python scripts/bench_sampler.py [--repeats 7] [--objects 40] [--busy] [--numpy-objects 0]
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flip import sampler as S

SIGMAS = (1, 3, 10, 30, 100)
SIZES = (1, 2, 4, 8, 16)
REPO = Path(__file__).resolve().parents[1]
from _reference import reference  # noqa: E402  (tests/reference.py: the one FLIP_REFERENCE_DIR setting)


def build_authors_sampler(src: Path, workdir: Path):
    """Compile the authors' extension (their sources, their module name flip_position) into workdir, load it from
    there without touching sys.path, or return (None, reason)."""
    sources = ["py_position.c", "position.c", "gaussian.c", "bbox.c", "ziggurat_inline.c"]
    if src is None:
        return None, reference.missing_reason("the authors' sampler sources")
    if not all((src / s).is_file() for s in sources):
        return None, f"authors' sources not found in {src}"
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler"
    out = workdir / ("flip_position" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cc, "-O2", "-shared", "-fPIC", f"-I{src}", f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}",
           *[str(src / s) for s in sources], "-o", str(out), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return None, "compile failed: " + res.stderr.strip().splitlines()[-1][:200]
    loader = importlib.machinery.ExtensionFileLoader("flip_position", str(out))
    spec = importlib.util.spec_from_file_location("flip_position", str(out), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod, " ".join(["cc -O2 -shared", *sources])


def check_parity(img, theirs) -> str:
    """Seed their RNG through its exported zigset() exactly as initialize_ziggurat(seed) does, run both samplers on
    the same float32 Gaussians, and compare patches and coords."""
    import ctypes

    lib = ctypes.CDLL(theirs.__file__)
    lib.zigset.argtypes = [ctypes.c_uint32] * 4
    m = 0xFFFFFFFF
    h, w = img.shape[:2]
    checked = 0
    for sigma, aspect, seed in [(1, 1, 3), (3, 1, 7), (5, 3, 11), (13, 1, 5), (40, 2, 9), (100, 1, 1)]:
        rot = np.array([0.05, -0.1, sigma / (w / 2), sigma / aspect / (h / 2), 0.6, 0.8], np.float32)
        lib.zigset((seed ^ 0xCAFEBABE) & m, (seed * 69069 + 1234567) & m, (seed * 1664525 + 1013904223) & m,
                   (seed * 18000 + 987654321) & m)
        lib.r4_nor_setup()
        P, C, _, n = theirs.sample_continuous_patches(img, rot, 512, [float(p) for p in SIZES], 2.67, 1.44)
        ours = S.sample_patches(img, S.authors_gaussian_px(rot, w, h), 512, SIZES, 2.67, 1.44, seed=seed, compat="authors")
        same = list(n) == ours.counts and all(np.array_equal(np.asarray(a), b) for a, b in zip(P, ours.patches)) and all(
            np.array_equal(np.asarray(a), b) for a, b in zip(C, ours.coords))
        if not same:
            return f"NO (sigma={sigma}, seed={seed}: counts {list(n)} vs {ours.counts})"
        checked += sum(ours.counts)
    return f"yes (6 objects, {checked} patches)"


def spin(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def per_object_ms(fn, n: int, clock=time.perf_counter) -> float:
    t0 = clock()
    fn()
    return (clock() - t0) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats; the median is reported")
    ap.add_argument("--objects", type=int, default=40, help="objects (seeds) per repeat and sampler")
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels")
    ap.add_argument("--tokens", type=int, default=512, help="token budget N")
    ap.add_argument("--busy", action="store_true", help="also run with one other busy process")
    ap.add_argument("--numpy-objects", type=int, default=0, help="also time the NumPy twins on this many objects")
    ap.add_argument("--authors-ext", type=Path, default=reference.sampler_sources(), help="the authors' ext/ sources (default: $FLIP_REFERENCE_DIR/authors-sampler/ext)")
    args = ap.parse_args()

    img = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    workdir = Path(tempfile.mkdtemp(prefix="flip-authors-sampler-"))
    try:
        theirs, how = build_authors_sampler(args.authors_ext, workdir)
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
              f"image {args.size}², N={args.tokens}, τ=2.67, c=1.44; median of {args.repeats} interleaved repeats × "
              f"{args.objects} objects")
        print(f"# authors' sampler: {how if theirs else 'n/a (' + how + ')'}")
        if theirs is not None:
            print(f"# compat='authors' == their compiled sampler, bit for bit: {check_parity(img, theirs)}")
        settings = [("idle", False)] + ([("1 busy process", True)] if args.busy else [])
        for label, busy in settings:
            stop = mp.Event()
            hog = mp.Process(target=spin, args=(stop,), daemon=True) if busy else None
            if hog:
                hog.start()
            try:
                run_table(img, args, theirs, label)
            finally:
                if hog:
                    stop.set()
                    hog.join(5)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_table(img, args, theirs, label):
    h, w = img.shape[:2]
    n = args.objects
    print(f"\n## {label}")
    print(f"{'':>19}|{'wall ms/obj, 1 thread':^26}|{'wall ms/obj, 2 threads':^26}|{'CPU ms/obj, 1 thread':^26}")
    print(f"{'sigma':>5} {'tokens ex/au':>12} |" + f"{'exact':>8}{'authors':>9}{'theirs':>8} |" * 3)
    for sigma in SIGMAS:
        rot = np.array([0.0, 0.0, sigma / (w / 2), sigma / (h / 2), 0.0, 1.0], np.float32)
        g = S.authors_gaussian_px(rot, w, h)
        seeds = list(range(n))
        runs = {
            "exact": lambda s: S.sample_patches(img, g, args.tokens, SIZES, 2.67, 1.44, seed=s, compat="exact"),
            "authors": lambda s: S.sample_patches(img, g, args.tokens, SIZES, 2.67, 1.44, seed=s, compat="authors"),
        }
        if theirs is not None:
            runs["theirs"] = lambda s: theirs.sample_continuous_patches(img, rot, args.tokens, [float(p) for p in SIZES], 2.67, 1.44)
        wall = {k: [] for k in runs}
        thr = {k: [] for k in runs}
        cpu = {k: [] for k in runs}
        names = list(runs)
        with ThreadPoolExecutor(2) as pool:
            for r in range(args.repeats):
                for k in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
                    fn = runs[k]
                    t0, c0 = time.perf_counter(), time.process_time()
                    for s in seeds:
                        fn(s)
                    wall[k].append((time.perf_counter() - t0) / n * 1e3)
                    cpu[k].append((time.process_time() - c0) / n * 1e3)
                    thr[k].append(per_object_ms(lambda: list(pool.map(fn, seeds)), n))
        med = lambda d, k: f"{statistics.median(d[k]):.3f}" if k in d else "n/a"  # noqa: E731
        tok = f"{runs['exact'](0).total}/{runs['authors'](0).total}"
        row = "".join(f"{med(d, 'exact'):>8}{med(d, 'authors'):>9}{med(d, 'theirs'):>8} |" for d in (wall, thr, cpu))
        print(f"{sigma:>5} {tok:>12} |{row}")
        if args.numpy_objects:
            for compat in ("exact", "authors"):
                ms = per_object_ms(lambda: [S.sample_patches(img, g, args.tokens, SIZES, 2.67, 1.44, seed=s, backend="numpy",
                                                             compat=compat) for s in range(args.numpy_objects)], args.numpy_objects)
                print(f"{'':>5} NumPy twin {compat}: {ms:.1f} ms/obj")


if __name__ == "__main__":
    main()
