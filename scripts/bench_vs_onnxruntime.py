"""The project's FLIP-Tiny vs the authors' pipeline, object by object, interleaved, on any dataset the harness reads.

    python scripts/bench_vs_onnxruntime.py --data data/objascale-mini --threads 1 2 --modes 5sigma hierarchical \
        --out results/bench_vs_onnxruntime_objascale-mini

Both sides get the same weights (the authors' FLIP-Tiny, flip-tiny-fused.onnx) and the same objects:
  project  flip.FlipPredictor on the imported weights, with the sampling rule the weights ask for (`sampler_compat`)
           and the suite's thread policy (flip/runtime.py): `--threads N` is its thread budget;
  authors  flip.authors_pipeline: their C sampler compiled from $FLIP_REFERENCE_DIR/authors-sampler/ext plus their ONNX
           in onnxruntime (graph optimisation off, intra-op threads = N, onnxruntime's defaults otherwise).
Each object's time is one full predict call (Gaussian → patches → encoder → decoder → mask), after one untimed warm-up
object per side; with --repeats R each side runs R times per object, alternating (AB BA AB ... then BA AB ... for the next
object), and the object's time per side is the fastest of its R (the least disturbed by other processes on a shared
machine; the same rule for both sides). Drifting machine load hits both alike.
The project side runs its default backend ("auto": onnxruntime for the encoder and the decoder, the project's own
modules exported, flip/ort/); `--project-backend torch` forces the torch path for comparison. The backend that ran is
written with the results.
Per area bucket (mask area / image area) it prints the median time of each side and the median of the per-object
ratios project/authors (< 1: the project is faster), plus the mean IoU between the two sides' masks (a sanity check:
the same model on the same kind of patches). Prints and writes figures only; asserts nothing.
"""
from __future__ import annotations

from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import flip  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from flip.authors_pipeline import AuthorsPipeline  # noqa: E402
from flip.ort import onnxruntime_version  # noqa: E402
from flip.predictor import FlipPredictor  # noqa: E402
from segcore.atomic import atomic_write_text  # noqa: E402

from _reference import reference  # noqa: E402  (tests/reference.py: the one FLIP_REFERENCE_DIR setting)

try:  # the harness's dataset adapters (moving from benchmark.datasets to segcore.datasets)
    from segcore.datasets import open_dataset
except ImportError:  # pragma: no cover
    from benchmark.datasets import open_dataset
try:
    from segcore.prompt import Prompt
except ImportError:  # pragma: no cover
    from flip.prompt import Prompt

BUCKETS = (("small <1%", 0.0, 0.01), ("medium 1-10%", 0.01, 0.10), ("large >=10%", 0.10, 1.01))


def project_model(onnx: Path):
    try:
        return flip.pretrained("flip-tiny", path=onnx)
    except TypeError:  # older signature
        model = flip.create_model("flip-tiny")
        flip.load_weights(model, onnx)
        return model


def load_objects(spec: str, limit: int | None, seed: int, min_pixels: int):
    """[(image_id, image, [(object_id, mask, area_ratio), ...])], a fixed seeded sample of `limit` objects."""
    ds = open_dataset(spec)
    entries = ds.index()
    all_objs = [(e, o) for e in entries for o in e.objects]
    if limit and limit < len(all_objs):
        keep = set(np.random.default_rng(seed).choice(len(all_objs), limit, replace=False).tolist())
        all_objs = [x for i, x in enumerate(all_objs) if i in keep]
    by_image: dict = {}
    for e, o in all_objs:
        by_image.setdefault(e.image_id, (e, []))[1].append(o)
    out = []
    for image_id, (e, objs) in by_image.items():
        img = ds.load_image(e)
        masks = ds.load_masks(e, [o.object_id for o in objs])
        items = []
        for o in objs:
            m = masks.get(o.object_id)
            if not isinstance(m, np.ndarray) or m.sum() < min_pixels:
                continue
            items.append((o.object_id, m, float(m.sum()) / m.size))
        if items:
            out.append((image_id, np.ascontiguousarray(img), items))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


def run(data, threads: int, mode: str, model, onnx: Path, sampler_src: Path, seed: int, repeats: int = 1,
        pause: float = 0.0, backend: str = "auto") -> tuple[list[dict], str]:
    pred = FlipPredictor(model, mode=mode, device="cpu", seed=seed, threads=threads, backend=backend)
    ref = AuthorsPipeline(onnx, sampler_src, threads=threads)
    rows = []
    first = True
    k = 0
    for image_id, img, items in data:
        pred.set_image(img)
        for oid, m, ratio in items:
            prompt = Prompt.from_mask(m)
            obj_seed = (seed * 1_000_003 + k) & 0x7FFFFFFF

            def a():
                return pred.predict([prompt])[0]

            def b():
                return ref.predict(img, prompt.rho, mode, seed=obj_seed)

            if first:  # warm-up (lazy weight packing, onnxruntime's first run)
                a(), b()
                first = False
            t, out = {a: float("inf"), b: float("inf")}, {}
            for rep in range(max(1, repeats)):
                order = (a, b) if (k + rep) % 2 == 0 else (b, a)
                for fn in order:
                    if pause:  # let the other side's thread pool go idle (onnxruntime's helpers spin after a run)
                        time.sleep(pause)
                    t0 = time.perf_counter()
                    out[fn] = fn()
                    t[fn] = min(t[fn], time.perf_counter() - t0)
            rows.append(dict(image=image_id, object=oid, area_ratio=ratio, project_s=t[a], authors_s=t[b],
                             ratio=t[a] / t[b], iou_between=iou(out[a], out[b]), tokens=int(pred.last_tokens[0]),
                             authors_tokens=int(sum(ref.last_counts)),
                             project_phases={k_: float(v) for k_, v in pred.timings.items()},
                             authors_phases=dict(ref.timings)))
            k += 1
    return rows, pred.backend


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for name, lo, hi in BUCKETS + (("all", 0.0, 1.01),):
        sel = [r for r in rows if lo <= r["area_ratio"] < hi]
        if not sel:
            out.append(dict(bucket=name, n=0))
            continue
        out.append(dict(bucket=name, n=len(sel), project_ms=1e3 * float(np.median([r["project_s"] for r in sel])),
                        authors_ms=1e3 * float(np.median([r["authors_s"] for r in sel])),
                        ratio_median=float(np.median([r["ratio"] for r in sel])),
                        ratio_q25=float(np.percentile([r["ratio"] for r in sel], 25)),
                        ratio_q75=float(np.percentile([r["ratio"] for r in sel], 75)),
                        iou_between=float(np.mean([r["iou_between"] for r in sel]))))
    return out


def table(blocks: list[dict]) -> str:
    lines = ["| mode | threads | bucket | objects | project ms (median) | authors ms (median) | project/authors (median of per-object ratios) [IQR] | IoU between | load avg (start→end) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in blocks:
        la = f"{b['loadavg_start'][0]:.2f}→{b['loadavg_end'][0]:.2f}"
        for s in b["summary"]:
            if not s["n"]:
                lines.append(f"| {b['mode']} | {b['threads']} | {s['bucket']} | 0 | n/a | n/a | n/a | n/a | {la} |")
                continue
            lines.append(f"| {b['mode']} | {b['threads']} | {s['bucket']} | {s['n']} | {s['project_ms']:.2f} | {s['authors_ms']:.2f} | "
                         f"**{s['ratio_median']:.2f}×** [{s['ratio_q25']:.2f}–{s['ratio_q75']:.2f}] | {s['iou_between']:.3f} | {la} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset spec as for python -m benchmark --data")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (each side's budget)")
    ap.add_argument("--modes", nargs="+", default=["5sigma", "hierarchical"], choices=["5sigma", "hierarchical"])
    ap.add_argument("--limit", type=int, default=None, help="fixed seeded sample of this many objects")
    ap.add_argument("--min-pixels", type=int, default=4, help="skip masks smaller than this")
    ap.add_argument("--seed", type=int, default=0, help="object sample and sampler seeds")
    ap.add_argument("--onnx", type=Path, default=None, help="authors' FLIP-Tiny ONNX (default: $FLIP_REFERENCE_DIR/flip-tiny-fused.onnx)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per object and side, alternating (fastest kept)")
    ap.add_argument("--pause", type=float, default=0.0, help="seconds of sleep before every timed run (default 0: "
                    "back to back, the authors' spinning onnxruntime helpers stay hot and may still spin into the next run)")
    ap.add_argument("--project-backend", default="auto", choices=["auto", "onnxruntime", "torch"],
                    help="the project's backend (FlipPredictor(backend=...); default auto)")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. what else ran on the machine)")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json (all rows) and OUT.md (the table)")
    args = ap.parse_args(argv)

    onnx = args.onnx or reference.require(reference.onnx_path(), "the authors' FLIP-Tiny ONNX")
    sampler_src = reference.require(reference.sampler_sources(), "the authors' sampler sources")
    model = project_model(onnx)
    data = load_objects(args.data, args.limit, args.seed, args.min_pixels)
    n_obj = sum(len(x[2]) for x in data)
    print(f"{args.data}: {len(data)} images, {n_obj} objects; sampler rule of the project side: "
          f"{getattr(model, 'sampler_compat', 'exact')}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}", flush=True)
    blocks = []
    for mode in args.modes:
        for threads in args.threads:
            la0 = os.getloadavg()
            t0 = time.time()
            rows, ran = run(data, threads, mode, model, onnx, sampler_src, args.seed, args.repeats, args.pause,
                            args.project_backend)
            blocks.append(dict(mode=mode, threads=threads, backend=ran, loadavg_start=la0, loadavg_end=os.getloadavg(),
                               seconds=time.time() - t0, summary=summarize(rows), rows=rows))
            print(table([{k: v for k, v in blocks[-1].items()}]).split("\n", 2)[2], flush=True)
    md = table(blocks)
    print("\n" + md)
    meta = dict(data=args.data, objects=n_obj, images=len(data), threads=args.threads, modes=args.modes, seed=args.seed,
                note=args.note, repeats=args.repeats, limit=args.limit, pause=args.pause,
                project_backend=sorted({b["backend"] for b in blocks}), sampler_compat=getattr(model, "sampler_compat", "exact"),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), torch=torch.__version__, python=platform.python_version(),
                cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                onnxruntime=onnxruntime_version(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(dict(meta=meta, blocks=blocks), indent=1))
        head = (f"# Project FLIP-Tiny vs the authors' pipeline: {args.data}\n\n{n_obj} objects in {len(data)} images; "
                f"same weights (authors' FLIP-Tiny) on both sides; project sampler rule `{meta['sampler_compat']}`; "
                f"OMP_WAIT_POLICY={meta['omp_wait_policy']}; project backend `{', '.join(meta['project_backend'])}`; fastest of "
                f"{args.repeats} alternating runs per object and side; {meta['date']}; torch {meta['torch']}, onnxruntime "
                f"{meta['onnxruntime']}, {meta['cpus']} CPUs.\n\nMachine load: {args.note or 'see load avg column'}\n\n")
        atomic_write_text(args.out.with_suffix(".md"), head + md + "\n")
        print(f"wrote {args.out.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
