"""CPU latency of FLIP per object (5σ and hierarchical), and FLIP-Tiny vs onnxruntime on identical inputs.

    python scripts/bench_flip.py [--threads 1 2] [--reps 7] [--sigmas 2 8 32 96] [--models flip-tiny flip-small]
                                 [--backends auto torch onnxruntime] [--decoder-sweep]

For each object size the same sampled patches and 5σ query grid go through our model (encode + decode) and through
onnxruntime running the authors' fused FLIP-Tiny graph (graph optimisation off, as the parity test); ours/ORT < 1
means we are faster. The two engines run alternately within each repetition (the machine is shared: load changes
hit both alike); "fwd ms" and "ORT ms" are medians, "ours/ORT" is the median of the per-repetition ratios.
--backends: the project's inference backend per table (FlipPredictor(backend=...), flip/ort/: "auto" = onnxruntime wherever it
can run the call). --decoder-sweep: torch vs onnxruntime decoder times per key and query count, alternating (the
measurement behind flip.ort.select_backend's choice).
The thread policy (OMP_WAIT_POLICY=PASSIVE before torch loads) is applied first thing (segcore.waitpolicy).
Prints figures only; asserts nothing.
"""
from __future__ import annotations

from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import flip  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from flip.modeling import KVCache, TokenBatch  # noqa: E402
from flip.ort import run as ort_run  # noqa: E402
from flip.predictor import FlipPredictor, box_5sigma  # noqa: E402
from flip.runtime import intra_op_threads  # noqa: E402
from segcore.prompt import Prompt  # noqa: E402

from _reference import reference  # noqa: E402  (tests/reference.py: the one FLIP_REFERENCE_DIR setting)


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


def decoder_sweep(model, reps: int, kv_counts=(91, 520), query_counts=(400, 1024, 2048, 4096, 8192)):
    """torch vs onnxruntime decoder (one object, one thread), alternating; median ms each and the ratio."""
    rng = torch.Generator().manual_seed(0)
    pos = torch.tensor([[0.0, 0.0, 0.05, 0.03, 0.8, 0.6]])
    print(f"decoder sweep, 1 thread, load {os.getloadavg()[0]:.2f}")
    print(f"{'keys':>5} {'queries':>8} {'torch ms':>9} {'ORT ms':>8} {'ORT/torch':>9}")
    with torch.inference_mode(), intra_op_threads(1):
        for n in kv_counts:
            cache = KVCache(torch.randn(n, model.cfg.channels, generator=rng) * 3,
                            torch.randn(n, model.cfg.channels, generator=rng), np.array([n]), pos)
            for m in query_counts:
                q = (torch.rand(m, 2, generator=rng) - 0.5) * 0.2

                tt, to, ratio = paired_times(lambda: model.decode(cache, q, [m]),
                                             lambda: ort_run.decode(model, cache, q, [m]), reps)
                print(f"{n:>5} {m:>8} {tt * 1e3:>9.2f} {to * 1e3:>8.2f} {1 / ratio:>9.2f}", flush=True)


def encoder_macs(cfg, counts) -> int:
    """Multiply-adds of one object's encoder (FLIP's own products; docs/speed.md): patch embeddings, the position MLPs
    of every layer and the decoder's K/V, 3 layers of QKV / attention / out / FFN, the decoder's K/V preparation."""
    c, hid, p_h = cfg.channels, cfg.channels * cfg.mlp_expansion, cfg.pos_mlp_hidden
    n = int(sum(counts)) + cfg.num_registers
    embed = 0
    for p, k in zip(cfg.patch_sizes, counts):
        if p <= 4:
            embed += k * (3 * p * p * hid + hid * c)
        else:
            s = p // 4
            embed += k * (16 * 3 * s * s * hid // 16 + hid * hid + hid * c)
    mlps = 3 * cfg.layers + 2
    pos = n * mlps * (2 * p_h + p_h * p_h + p_h * c)
    layer = n * (3 * c * c + c * c + 2 * c * hid) + 2 * n * n * c
    kv = n * (2 * c * hid + c * c + 2 * c * c + c * c + c * c)
    return embed + pos + cfg.layers * layer + kv


def decoder_macs(cfg, keys: int, queries: int) -> int:
    """Multiply-adds of `queries` decoder queries against `keys` keys: position MLP, attention, out, folded tail."""
    c, hid, p_h = cfg.channels, cfg.channels * cfg.mlp_expansion, cfg.pos_mlp_hidden
    return queries * ((2 * p_h + p_h * p_h + p_h * c) + 2 * keys * c + c * c + c * hid + hid + c)


def profile_dataset(data: str, mode: str, threads: int, reps: int, limit: int | None, max_area: float):
    """Per-phase medians on a dataset's objects below max_area of the image (fastest of reps per object), with the FLOP
    rate of encoder and decoder (analytic multiply-adds × 2 / measured phase time)."""
    from segcore.datasets import open_dataset

    onnx = reference.onnx_path()
    model = flip.create_segmenter("flip-tiny", weights=str(onnx) if onnx else "random", device="cpu").model
    pred = FlipPredictor(model, mode=mode, device="cpu", threads=threads)
    queries = []
    decode = pred._decode

    def counting_decode(cache, coords, q_lens):
        queries.append(int(coords.shape[0]))
        return decode(cache, coords, q_lens)

    pred._decode = counting_decode
    ds = open_dataset(data)
    rows = []
    for e in ds.index():
        img = ds.load_image(e)
        masks = ds.load_masks(e, [o.object_id for o in e.objects])
        for o in e.objects:
            m = masks.get(o.object_id)
            if not isinstance(m, np.ndarray) or m.sum() < 4 or m.mean() >= max_area:
                continue
            pred.set_image(img)
            prompt = Prompt.from_mask(m)
            pred.predict([prompt])
            best = None
            for _ in range(reps):
                queries.clear()
                t0 = time.perf_counter()
                pred.predict([prompt])
                t = time.perf_counter() - t0
                if best is None or t < best[0]:
                    best = (t, dict(pred.timings), sum(queries))
            pos, g = pred._gaussians(prompt, 0)
            counts = pred._sample(g, 0, prompt).counts
            n = int(sum(counts)) + model.cfg.num_registers
            rows.append(dict(total=best[0], **best[1], queries=best[2], tokens=n,
                             enc_flop=2 * encoder_macs(model.cfg, counts), dec_flop=2 * decoder_macs(model.cfg, n, best[2])))
            if limit and len(rows) >= limit:
                break
        if limit and len(rows) >= limit:
            break
    med = lambda k: float(np.median([r[k] for r in rows]))  # noqa: E731
    enc_rate = np.median([r["enc_flop"] / r["encoder"] for r in rows]) / 1e9
    dec_rate = np.median([r["dec_flop"] / r["decoder"] for r in rows if r["decoder"] > 0]) / 1e9
    print(f"{data} {mode}, {threads} thread(s), objects < {max_area:.0%}: {len(rows)}; load {os.getloadavg()[0]:.2f}")
    print(f"median per object: total {1e3 * med('total'):.2f} ms = preprocess {1e3 * med('preprocess'):.2f} + encoder "
          f"{1e3 * med('encoder'):.2f} + decoder {1e3 * med('decoder'):.2f} + postprocess {1e3 * med('postprocess'):.2f}; "
          f"tokens {med('tokens'):.0f}, queries {med('queries'):.0f}")
    print(f"encoder {med('enc_flop') / 1e9:.3f} GFLOP at {enc_rate:.0f} GFLOP/s; decoder {med('dec_flop') / 1e9:.3f} GFLOP "
          f"at {dec_rate:.0f} GFLOP/s (medians over objects)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["flip-tiny", "flip-small"], help="registry names to time")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[2, 8, 32, 96], help="object std in pixels (disc radius 2σ)")
    ap.add_argument("--image-size", type=int, default=512, help="square synthetic image side, pixels")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch and onnxruntime intra-op threads; "
                    "several values give one table each")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (median), after one warm-up")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    ap.add_argument("--onnx", default=None, help="authors' fused FLIP-Tiny ONNX (default: $FLIP_REFERENCE_DIR/flip-tiny-fused.onnx)")
    ap.add_argument("--backends", nargs="+", default=["auto"], choices=["auto", "torch", "onnxruntime"],
                    help="the project's inference backend(s); several values give one table each")
    ap.add_argument("--decoder-sweep", action="store_true", help="only the torch vs onnxruntime decoder sweep")
    ap.add_argument("--profile-data", default=None, help="only a per-phase profile with FLOP rates on this dataset's "
                    "small objects (dataset spec as for python -m benchmark --data)")
    ap.add_argument("--profile-mode", default="hierarchical", choices=["5sigma", "hierarchical"])
    ap.add_argument("--profile-max-area", type=float, default=0.01, help="objects below this fraction of the image")
    ap.add_argument("--profile-limit", type=int, default=None, help="at most this many objects")
    args = ap.parse_args(argv)
    if args.profile_data:
        for threads in args.threads:
            profile_dataset(args.profile_data, args.profile_mode, threads, args.reps, args.profile_limit,
                            args.profile_max_area)
        return
    if args.decoder_sweep:
        onnx_path = Path(args.onnx) if args.onnx else reference.onnx_path()
        weights = str(onnx_path) if onnx_path and onnx_path.is_file() else "random"
        decoder_sweep(flip.create_segmenter("flip-tiny", weights=weights, device="cpu", seed=args.seed).model, args.reps)
        return

    for threads, backend in [(t, b) for t in args.threads for b in args.backends]:
        torch.set_num_threads(threads)
        onnx_path = Path(args.onnx) if args.onnx else reference.onnx_path()
        sess = None
        if onnx_path and onnx_path.is_file():
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        print(f"torch {torch.__version__}, backend {backend}, load {os.getloadavg()[0]:.2f}, threads {threads}, image {args.image_size}², reps {args.reps}, "
              f"ORT reference: {onnx_path if sess else 'n/a (file not found)'}")
        print(f"{'model':<11} {'mode':<12} {'σpx':>5} {'tokens':>6} {'queries':>8} {'total ms':>9} {'sample':>7} {'enc':>7} "
              f"{'dec':>7} {'post':>7} | {'fwd ms':>7} {'ORT ms':>7} {'ours/ORT':>8}")
        for name in args.models:
            weights = str(onnx_path) if (name == "flip-tiny" and sess) else "random"
            model = flip.create_segmenter(name, weights=weights, device="cpu", seed=args.seed).model
            for mode in ("5sigma", "hierarchical"):
                pred = FlipPredictor(model, mode=mode, device="cpu", seed=args.seed, threads=threads, backend=backend)
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
