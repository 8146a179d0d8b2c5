"""End-to-end parity: this project's FLIP pipeline vs the authors' pipeline on the same objects (issue 10 item 4).

    python scripts/parity_vs_authors.py --data data/objascale-mini [--data NAME=SPEC ...] [--model flip-tiny.authors]
                                        [--limit N] [--seed 0] [--ieee] [--out results/parity.json]

Project side: the registry model (default flip-tiny.authors: the authors' weights, their Gaussian convention and
their patch-sampling rule) through segcore's Segmenter protocol, one batched predict per image, exactly as the
harness runs it. Authors' side (flip.authors_pipeline): their C sampler compiled from $FLIP_REFERENCE_DIR/
authors-sampler/ext into a temporary folder outside the repo (their own build flags, or with --ieee their code with
IEEE arithmetic), their ONNX in onnxruntime with graph optimisation off, one object at a time. Both sides get the
same prompt (rho from the ground-truth mask) and the same per-object seed (flip.predictor.object_seed of the run seed
and the object's identity). Prints per dataset: mean IoU of each side, the paired per-object difference
(project − authors, IoU points) with a bootstrap 95 % CI, and how many objects got bit-identical patches (counts,
pixels, coordinates) and identical masks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from _reference import reference  # noqa: E402  (tests/reference.py: the one FLIP_REFERENCE_DIR setting)
from segcore.atomic import atomic_write_text


def bootstrap_ci(d: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    if len(d) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def same_patches(ps, feeds, counts) -> bool:
    if list(ps.counts) != list(counts):
        return False
    for p, patches, coords in zip(ps.sizes, ps.patches, ps.coords):
        theirs = feeds[f"patches_p{p}"]
        ours = np.ascontiguousarray(patches.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)
        if not (np.array_equal(ours, theirs) and np.array_equal(np.asarray(coords, np.float32), feeds[f"coords_p{p}"])):
            return False
    return True


def run_dataset(spec: str, seg, pipe, args) -> dict:
    from flip.predictor import object_seed
    from segcore.datasets import ItemError, Selection, open_dataset, prompts_of, select
    from segcore.metrics import mask_iou

    ds = open_dataset(spec)
    pred = seg.predictor
    rows, skipped = [], 0
    t0 = time.perf_counter()
    chosen = list(select(ds, Selection(limit=args.limit, seed=args.seed)))
    total = sum(len(o) for _, o in chosen)
    for entry, objs in chosen:
        try:
            image, prompts, gts, unusable = prompts_of(ds, entry, objs)
        except (ItemError, ValueError) as e:
            print(f"  skip image {entry.image_id}: {e}", file=sys.stderr)
            skipped += len(objs)
            continue
        skipped += unusable
        if not prompts:
            continue
        seg.set_image(image)
        ours = seg.predict(prompts)
        tokens = list(pred.last_tokens)
        for k, (prompt, gt, mine) in enumerate(zip(prompts, gts, ours)):
            s = object_seed(pred.seed, prompt.identity())
            theirs = pipe.predict(image, prompt.rho, mode=pred.mode, seed=s)
            their_counts = list(pipe.last_counts)
            # the patches the project fed its model, re-sampled (deterministic) and compared with theirs
            _, g = pred._gaussians(prompt, k)
            ps = pred._sample(g, k, prompt)
            feeds, _ = pipe.sample(image, prompt.rho, s)
            rows.append({"image_id": str(entry.image_id), "object_id": str(prompt.meta["object_id"]),
                         "area_ratio": prompt.area / gt.size, "iou_project": mask_iou(mine, gt),
                         "iou_authors": mask_iou(theirs, gt), "tokens_project": int(tokens[k]),
                         "tokens_authors": int(sum(their_counts)), "same_patches": same_patches(ps, feeds, their_counts),
                         "same_mask": bool(np.array_equal(mine, theirs))})
        print(f"  {len(rows)}/{total} objects ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    d = np.array([r["iou_project"] - r["iou_authors"] for r in rows]) * 100
    lo, hi = bootstrap_ci(d, args.boot, args.seed)
    return {"dataset": ds.name, "spec": spec, "objects": len(rows), "skipped": skipped,
            "iou_project": float(np.mean([r["iou_project"] for r in rows]) * 100) if rows else float("nan"),
            "iou_authors": float(np.mean([r["iou_authors"] for r in rows]) * 100) if rows else float("nan"),
            "mean_diff_points": float(d.mean()) if len(d) else float("nan"), "ci95": [lo, hi],
            "same_patches": int(sum(r["same_patches"] for r in rows)), "same_masks": int(sum(r["same_mask"] for r in rows)),
            "same_token_counts": int(sum(r["tokens_project"] == r["tokens_authors"] for r in rows)),
            "seconds": time.perf_counter() - t0, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, help="dataset spec (segcore.datasets.open_dataset); repeat")
    p.add_argument("--model", default="flip-tiny.authors", help="registry name of the project side (authors' weights)")
    p.add_argument("--weights", default=None, help="explicit weights file for the project side (default: the tag's file from the cache, else the authors' ONNX below)")
    p.add_argument("--onnx", default=None, help="the authors' fused ONNX (default $FLIP_REFERENCE_DIR/flip-tiny-fused.onnx)")
    p.add_argument("--ieee", action="store_true", help="compile their sampler with IEEE arithmetic instead of their "
                   "-O3 -march=native -ffast-math flags (bit-for-bit patches expected)")
    p.add_argument("--limit", type=int, default=None, help="fixed random subset of this many objects per dataset")
    p.add_argument("--seed", type=int, default=0, help="run seed (per-object seeds derive from it and the object's identity)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--out", default=None, help="write the figures and per-object rows here (JSON, atomically)")
    args = p.parse_args(argv)

    import torch

    from flip import authors_pipeline
    from segcore import registry

    torch.set_num_threads(args.threads)
    onnx = args.onnx or reference.onnx_path()
    weights = args.weights
    if weights is None and not registry.resolve(args.model).files and onnx is not None:
        weights = str(onnx)  # the authors' weights not in the cache: the reference file itself
    try:
        seg = registry.create(args.model, weights=weights, device="cpu", seed=args.seed)
    except (FileNotFoundError, registry.ModelError) as e:
        print(f"error: {e}" + ("" if onnx else f" ({reference.missing_reason()})"), file=sys.stderr)
        return 2
    if not hasattr(seg, "predictor"):
        p.error(f"{args.model} is not a FLIP model")
    try:
        pipe = authors_pipeline.AuthorsPipeline(onnx, reference.sampler_sources(), threads=args.threads, num_tokens=seg.predictor.num_tokens,
                                                tau=seg.predictor.tau, coverage=seg.predictor.coverage,
                                                cflags=authors_pipeline.IEEE_CFLAGS if args.ieee else authors_pipeline.CFLAGS)
    except authors_pipeline.ReferenceMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    st = seg.settings()
    build = "IEEE (" + " ".join(authors_pipeline.IEEE_CFLAGS) + ")" if args.ieee else "their flags (" + " ".join(authors_pipeline.CFLAGS) + ")"
    print(f"project: {seg.name} [{seg.weights_id}] mode={st['mode']} convention={st['convention']} "
          f"sampler_compat={st['sampler_compat']} tau={st['tau']} c={st['coverage']} N={st['num_tokens']} seed={st['seed']}")
    print(f"authors: their sampler, {build}; their ONNX in onnxruntime, optimisation off; threads={args.threads}")
    results = []
    for spec in args.data:
        r = run_dataset(spec, seg, pipe, args)
        results.append(r)
        n = r["objects"]
        print(f"{r['dataset']}: n={n} (skipped {r['skipped']}) IoU project {r['iou_project']:.2f} authors "
              f"{r['iou_authors']:.2f}; paired difference project − authors {r['mean_diff_points']:+.3f} points, "
              f"95 % bootstrap CI [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]; identical patches {r['same_patches']}/{n}, "
              f"identical token counts {r['same_token_counts']}/{n}, identical masks {r['same_masks']}/{n}")
    if args.out:
        meta = {"settings": st, "model": seg.name, "weights_id": seg.weights_id, "authors_build": build,
                "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        atomic_write_text(args.out, json.dumps({"meta": meta, "datasets": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
