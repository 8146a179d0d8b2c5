"""Paired before/after table of two benchmark runs (the one `python -m flip.training.finetune` writes), from their
records alone: mean IoU on the objects both scored, all and < 1 % of the image, per dataset and optionally per image.

    python scripts/compare_runs.py --before results/run-a:flip-tiny.authors --after results/run-b:flip-tiny \\
        [--by-image skimage]
"""
from __future__ import annotations

import argparse

from flip.training.finetune import compare, read_records


def _load(spec: str) -> dict:
    run, _, model = spec.partition(":")
    return read_records(run, model or None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", nargs="+", required=True, help="RUN_DIR[:MODEL] ... (records merged)")
    p.add_argument("--after", nargs="+", required=True, help="RUN_DIR[:MODEL] ...")
    p.add_argument("--by-image", nargs="*", default=[], help="datasets to also split per image id")
    a = p.parse_args(argv)
    before, after = {}, {}
    for dst, specs in ((before, a.before), (after, a.after)):
        for s in specs:
            for ds, recs in _load(s).items():
                dst.setdefault(ds, {}).update(recs)
                if ds in a.by_image:
                    for key, v in recs.items():
                        dst.setdefault(f"{ds}/{key[0]}", {})[key] = v
    print("| eval set | objects | n | before IoU | after IoU | after − before [95 % CI] | improved |")
    print("|---|---|---|---|---|---|---|")
    for r in compare(before, after):
        if not r["n"]:
            print(f"| {r['dataset']} | {r['objects']} | 0 | n/a | n/a | n/a | n/a |")
            continue
        print(f"| {r['dataset']} | {r['objects']} | {r['n']} | {r['before']:.2f} | {r['after']:.2f} | "
              f"{r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] | {100 * r['improved']:.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
