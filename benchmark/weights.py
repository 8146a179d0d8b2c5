"""Fetch and inspect model weights: `python -m benchmark.weights [MODEL ...] [--list] [--accept FILE]` (`make weights`).

Without --list, every file a model needs is fetched into the cache ($FLIP_SUITE_CACHE) with a progress bar:
checked against its published sha256, or trusted on first use and written to the cache's weights.lock.json.
A name without a tag covers all its tags (flip-tiny: the authors' files and the packaged project checkpoint);
no name means every registered model. The logic lives in segcore/hub.py; this is its command line.
"""
from __future__ import annotations

import argparse
import sys

from segcore import hub, registry


def entries(names: list[str]) -> list[registry.ModelEntry]:
    """Registry entries for CLI names (untagged: every tag of the model; none: every model with files)."""
    from .models import names as model_names

    model_names()  # imports the model families so that their entries exist
    out: list[registry.ModelEntry] = []
    for name in names or registry.list_models(with_tags=False):
        model, tag = registry.split_name(name.strip().lower())
        if tag is not None:
            out.append(registry.get(name))
            continue
        registry.get(model)  # unknown names fail here with the list of known ones
        out.extend(registry.get(f"{model}.{t}" if t else model) for t in registry.tags(model))
    seen, unique = set(), []
    for e in out:
        if e.name not in seen and e.file_sets():
            seen.add(e.name)
            unique.append(e)
    return unique


def list_files(es: list[registry.ModelEntry]) -> int:
    for e in es:
        print(f"{e.name}  ({e.description})")
        for i, files in enumerate(e.file_sets()):
            for f in files:
                path, state = hub.status(f)
                where = path or hub.cache_dir(f.family) / f.filename
                kind = "published sha256" if f.sha256 else "trust on first use" if f.download_url else "packaged"
                print(f"  {'needs' if i == 0 else f'or #{i}'} {f.filename:<28} {state:<40} {where}  [{kind}; "
                      f"{f.download_url or 'no download address'}]")
    print(f"lock file: {hub.lock_path()}")
    return 0


def fetch(es: list[registry.ModelEntry], timeout: float | None, progress: bool) -> int:
    failed = 0
    for e in es:
        sets = e.file_sets()
        if e.local_files() is None and not registry.downloadable(e):
            print(f"{e.name}: no download address for {', '.join(f.filename for f in e.weights)}; skipped")
            failed += 1
            continue
        try:
            paths = hub.resolve_any(e.name, sets, download=True, timeout=timeout, progress=progress)
        except hub.WeightsError as err:
            print(f"{e.name}: FAILED: {err}", file=sys.stderr)
            failed += 1
            continue
        ids = hub.weights_id(paths, [f for s in sets for f in s if f.sha256])
        print(f"{e.name}: ok  {ids}  ({', '.join(str(p) for p in paths)})")
    print(f"{len(es) - failed} ok, {failed} failed; cache {hub.cache_dir()}, lock file {hub.lock_path()}")
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL", help="registry names (default: every model)")
    p.add_argument("--list", action="store_true", help="list each model's files: present?, where, sha256 status")
    p.add_argument("--accept", action="append", metavar="FILE", default=[],
                   help="trust the cache file FILE (family/filename, e.g. flip/flip-large.ckpt) as it is now")
    p.add_argument("--forget", action="append", metavar="FILE", default=[],
                   help="remove FILE's lock entry (it is trusted again on its next use)")
    p.add_argument("--timeout", type=float, help=f"seconds without a byte before a download fails "
                                                  f"(default ${hub.ENV_TIMEOUT} or {hub.DEFAULT_TIMEOUT:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    try:
        if a.accept or a.forget:
            for key in a.accept:
                e = hub.accept(key)
                print(f"accepted {key}: sha256 {e['sha256']}, {e['size']} bytes, locked {e['date']} in {hub.lock_path()}")
            for key in a.forget:
                print(f"{key}: lock entry {'removed' if hub.forget(key) else 'not found'} ({hub.lock_path()})")
            return 0
        es = entries(a.models)
        return list_files(es) if a.list else fetch(es, a.timeout, not a.no_progress)
    except (hub.WeightsError, registry.ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
