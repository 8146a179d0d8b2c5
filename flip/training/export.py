"""Turn a training checkpoint into the small inference file flip.pretrained loads:

    python -m flip.training.export runs/x/last.pt flip/checkpoints/flip-tiny-objascale.pt [--fp32] [--meta KEY=VALUE ...]

The file holds the model's state dict (fp16 by default), its config, the Gaussian convention and the patch-sampling
rule (sampler_compat) it was trained with, the training step and the training arguments; never optimiser state.
"""
from __future__ import annotations

import argparse
import json
import sys

from .checkpoint import export_weights, load_checkpoint


def export(checkpoint, out, half: bool = True, extra: dict | None = None) -> dict:
    ck = load_checkpoint(checkpoint)
    args = ck.get("args", {})
    meta = {"step": int(ck["step"]), "convention": ck.get("convention", args.get("gaussian_convention", "pixel")),
            # checkpoints from before --sampler-compat existed were all trained with the exact rule
            "sampler_compat": args.get("sampler_compat", "exact"),
            "init_weights": ck.get("source", "random"), "train_args": args, "checkpoint": str(checkpoint),
            **(ck.get("provenance") or {})}  # parent weights' sha256, training data fingerprint
    meta.update(extra or {})
    export_weights(ck["model"], out, name=ck.get("model_name", args.get("model", "flip-tiny")),
                   model_config=ck.get("model_config", {}), meta=meta, half=half)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m flip.training.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (OUT/last.pt or OUT/stepNNNNNNNN.pt)")
    p.add_argument("out", help="inference weights file to write (atomically)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16, half the size)")
    p.add_argument("--meta", nargs="*", default=[], help="extra KEY=VALUE pairs stored in the file's meta (JSON values allowed)")
    a = p.parse_args(argv)
    extra = {}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    meta = export(a.checkpoint, a.out, half=not a.fp32, extra=extra)
    print(f"wrote {a.out} (step {meta['step']}, convention {meta['convention']}, sampler rule {meta['sampler_compat']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
