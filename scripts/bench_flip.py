"""CPU latency of FLIP per object (5σ and hierarchical), and FLIP-Tiny vs onnxruntime on identical inputs.

    python scripts/bench_flip.py [--threads 1 2] [--reps 7] [--sigmas 2 8 32 96] [--models flip-tiny flip-small]

For each object size the same sampled patches and 5σ query grid go through our model (encode + decode) and through
onnxruntime running the authors' fused FLIP-Tiny graph (graph optimisation off, as the parity test); ours/ORT < 1
means we are faster. The two engines run alternately within each repetition (the machine is shared: load changes
hit both alike); "fwd ms" and "ORT ms" are medians, "ours/ORT" is the median of the per-repetition ratios.
Prints figures only; asserts nothing.
With --threads > 1 on a shared, loaded machine, set OMP_WAIT_POLICY=PASSIVE in the environment: torch's OpenMP workers
otherwise spin-wait for descheduled partners and multi-thread times blow up (3-300× measured here, old and new code).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flip  # noqa: E402
from flip.modeling import TokenBatch  # noqa: E402
from flip.predictor import FlipPredictor, box_5sigma  # noqa: E402
from segcore.prompt import Prompt  # noqa: E402
from flip.weights import reference_onnx  # noqa: E402


def scene(size: int, sigma: float):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)
    r = 2.0 * sigma  # a filled disc of radius 2σ has std σ per axis
    m = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= r * r
    img[m] = (200, 60, 60)
    return img, m


def median_time(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def paired_times(fn_a, fn_b, reps: int):
    """Alternate a and b (after one warm-up each) → (median a, median b, median of a/b per repetition)."""
    fn_a()
    fn_b()
    ta, tb = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn_a()
        t1 = time.perf_counter()
        fn_b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return float(np.median(ta)), float(np.median(tb)), float(np.median(np.array(ta) / np.array(tb)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["flip-tiny", "flip-small"], help="registry names to time")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[2, 8, 32, 96], help="object std in pixels (disc radius 2σ)")
    ap.add_argument("--image-size", type=int, default=512, help="square synthetic image side, pixels")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch and onnxruntime intra-op threads; "
                    "several values give one table each")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (median), after one warm-up")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    ap.add_argument("--onnx", default=None, help="authors' fused FLIP-Tiny ONNX (default: FLIP_REFERENCE_ONNX / shared)")
    args = ap.parse_args(argv)

    for threads in args.threads:
        torch.set_num_threads(threads)
        onnx_path = Path(args.onnx) if args.onnx else reference_onnx()
        sess = None
        if onnx_path.is_file():
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        print(f"torch {torch.__version__}, threads {threads}, image {args.image_size}², reps {args.reps}, "
              f"ORT reference: {onnx_path if sess else 'n/a (file not found)'}")
        print(f"{'model':<11} {'mode':<12} {'σpx':>5} {'tokens':>6} {'queries':>8} {'total ms':>9} {'sample':>7} {'enc':>7} "
              f"{'dec':>7} {'post':>7} | {'fwd ms':>7} {'ORT ms':>7} {'ours/ORT':>8}")
        for name in args.models:
            weights = str(onnx_path) if (name == "flip-tiny" and sess) else "random"
            model = flip.create_segmenter(name, weights=weights, device="cpu", seed=args.seed).model
            for mode in ("5sigma", "hierarchical"):
                pred = FlipPredictor(model, mode=mode, device="cpu", seed=args.seed)
                for sigma in args.sigmas:
                    img, m = scene(args.image_size, sigma)
                    prompt = Prompt.from_mask(m)
                    pred.set_image(img)
                    phases = []

                    def run():
                        pred.set_image(img)
                        pred.predict([prompt])
                        phases.append(pred.timings)

                    total = median_time(run, args.reps)
                    ph = {k: float(np.median([p.get(k, 0.0) for p in phases[1:]])) * 1e3 for k in ("preprocess", "encoder", "decoder", "postprocess")}
                    line = (f"{name:<11} {mode:<12} {sigma:>5.0f} {pred.last_tokens[0]:>6} ")
                    fwd = ort_t = None
                    if mode == "5sigma":
                        # identical inputs for both engines: one sampled patch set + the 5σ query grid
                        h, w = img.shape[:2]
                        pos, g = pred._gaussians(prompt, 0)
                        ps = pred._sample(g, 0)
                        x0, y0, x1, y1 = box_5sigma(g, w, h)
                        gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
                        q = np.stack([gx.ravel() / 128 - w / 256, gy.ravel() / 128 - h / 256], 1).astype(np.float32)
                        batch = TokenBatch.from_objects([ps.patches], [ps.coords], pos[None], model.patch_sizes)
                        qt = torch.from_numpy(q)

                        def fwd_fn():
                            with torch.inference_mode():
                                return model(batch, qt)

                        nq = len(q)
                        if sess is not None and name == "flip-tiny":
                            feeds = {f"patches_p{p}": batch.patches[i].numpy() for i, p in enumerate(model.patch_sizes)}
                            feeds.update({f"coords_p{p}": batch.coords[i].numpy() for i, p in enumerate(model.patch_sizes)})
                            feeds.update(position=pos[None].astype(np.float32), mask_coordinates=q)
                            fwd, ort_t, ratio = paired_times(fwd_fn, lambda: sess.run(["mask_logits"], feeds), args.reps)
                        else:
                            fwd = median_time(fwd_fn, args.reps)
                    else:
                        nq = 0
                    line += (f"{nq if nq else '-':>8} {total * 1e3:>9.2f} {ph['preprocess']:>7.2f} {ph['encoder']:>7.2f} "
                             f"{ph['decoder']:>7.2f} {ph['postprocess']:>7.2f} | ")
                    line += f"{fwd * 1e3:>7.2f} " if fwd else f"{'-':>7} "
                    line += f"{ort_t * 1e3:>7.2f} {ratio:>8.2f}" if ort_t else f"{'n/a':>7} {'n/a':>8}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
