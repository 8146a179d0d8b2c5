r"""python -m benchmark: run models on datasets, write records, then the reports.

Examples
  python -m benchmark --model flip-tiny --data data/objascale-mini
  python -m benchmark --model flip-tiny,noop --data coco=/data/coco/val.json::/data/coco/val2017 --limit 2000
  python -m benchmark --config bench.toml --shard 0/4          (then: python -m benchmark.report RUN_DIR --merge)
  python -m benchmark --model sam-b --data x.hdf5 --executor slurm --shards 8 --slurm-partition gpu

Data specs: [NAME=]PATH[#SPLIT][::IMAGE_DIR], comma-separated for several
  NAME= counts only when NAME is a bare word (letters, digits, _ . + -); #SPLIT only when SPLIT is a bare word at
  the end of an ObjaScale folder's path; the first :: starts IMAGE_DIR; a comma always separates two specs.
  Escape a literal = # , or : with a backslash (\= \# \, \:\:) and a backslash as \\; quote the spec in the shell:
    --data 'coco=/data/a\,b/val.json::/data/x#1'      (NAME coco, PATH /data/a,b/val.json, IMAGE_DIR /data/x#1)
    --data '/data/run\#3'                            (the ObjaScale folder "/data/run#3", eval split)

Exit codes: 0 done (some objects may have failed: they are counted and recorded); 1 the run finished but no
object succeeded (the reason is printed); 2 configuration error (nothing was run and run.json was not written);
3 the run stopped because its outputs could not be written (disk full...: finished objects are kept, rerun to
resume); 130 interrupted by Ctrl-C or SIGTERM (buffered records are written first; rerun to resume).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path

# Only the standard library at module level: `--help` and `--list-models` answer without numpy, torch or a model
# (the run's modules load in main(), after the wait policy is set by __main__).

BACKENDS = ("auto", "onnxruntime", "torch")  # = segcore.segmenter.BACKENDS (tests/test_benchmark_cli.py checks)
DEFAULTS = dict(model="flip-tiny", data="data/objascale-mini", results="results", weights=None, mode="5sigma", backend=None,
                device=None, threads=None, warmup=2, seed=0, limit=None, min_area=None, max_area=None, shard="0/1",
                run=None, boundary=True, retry_failed=False, report=True, executor="local", shards=1,
                slurm_partition=None, slurm_timeout_min=240, slurm_cpus=4, slurm_gpus=0, flush_every=200,
                progress=True, latest=True, download=None, prompt="oracle", prompts=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--config", help="TOML or YAML file with any of these options (flags given on the command line win)")
    a("--model", help="comma-separated registry names: flip-tiny, flip-small, sam-b, noop, oracle-box... (default flip-tiny)")
    a("--data", action="append", help="dataset: ObjaScale folder (eval split; DIR#train or DIR#all for others), FILE.json[::IMAGES], "
      "FILE.hdf5, optionally NAME=PATH; repeat or comma-separate for several; escape = # , : in paths with a "
      "backslash (see 'Data specs' above) (default data/objascale-mini)")
    a("--weights", help="weights for the model(s): a tag (authors, project = the committed FLIP-Tiny checkpoint, official), "
      "'random' (seeded random init; IoU n/a) or a file path. Default: the tag in the name, else the first tag found here")
    a("--download", action="store_true", default=None,
      help="fetch the model's missing weights into the cache first (published sha256 checked, else trusted on first use "
      "and locked); same as DOWNLOAD=1 for make bench, or make weights MODEL=...")
    a("--list-models", action="store_true", help="list every registered model with its tags, weights and local availability")
    a("--prompt", metavar="PROTOCOL",
      help="how prompts are made (docs/prompts.md): oracle (default: the mask's tight box and Gaussian), "
      "box-jitter[:σ,cap] (SAM's box noise, default 0.1,20), gaussian-jitter[:level,cap] (the same noise on the "
      "Gaussian), detections=FILE (COCO results json; misses counted). Recorded in every record and run.json")
    a("--prompts", metavar="FILE", help="replay a saved prompt set: a run's prompts.csv (or its run folder); every "
      "run writes the prompts it used there")
    a("--mode", choices=["5sigma", "hierarchical"], help="FLIP inference mode (default 5sigma)")
    a("--backend", choices=BACKENDS, help="execution backend: auto (each model's fastest: onnxruntime for FLIP on the CPU), "
      "onnxruntime or torch; the one that ran is in every record and run.json (default auto)")
    a("--device", help="cpu or cuda[:k] (default: cuda when available)")
    a("--threads", type=int, help="torch intra-op threads (default: torch's choice); recorded in run.json")
    a("--warmup", type=int, help="untimed warm-up calls per model before the run (default 2)")
    a("--seed", type=int, help="run seed: the --limit sample and the models' own RNG (default 0)")
    a("--limit", type=int, help="fixed random sample of this many objects per dataset (seeded by --seed)")
    a("--min-area", type=float, help="keep objects with relative mask area ≥ this (fraction of the image)")
    a("--max-area", type=float, help="keep objects with relative mask area ≤ this (fraction of the image)")
    a("--shard", help="k/n: run only images k, k+n, k+2n... (several shards can write the same run folder)")
    a("--run", help="run folder name under --results (default: <models>_<datasets>[_limitN]); reruns resume it")
    a("--results", help="results folder (default results/)")
    a("--no-boundary", dest="boundary", action="store_false", default=None, help="skip boundary IoU (faster)")
    a("--retry-failed", action="store_true", default=None, help="rerun objects whose record says failed")
    a("--no-report", dest="report", action="store_false", default=None, help="only write records")
    a("--no-latest", dest="latest", action="store_false", default=None, help="do not point results/latest at this run")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    a("--flush-every", type=int, help="rows per records part file (default 200)")
    a("--executor", choices=["local", "slurm", "submitit-local"],
      help="local (default); slurm: one submitit job per shard; submitit-local: the same jobs as local processes (to test a setup)")
    a("--shards", type=int, help="with --executor slurm: number of jobs (default 1)")
    a("--slurm-partition", help="Slurm partition")
    a("--slurm-timeout-min", type=int, help="Slurm time limit per job in minutes (default 240)")
    a("--slurm-cpus", type=int, help="CPUs per Slurm job (default 4)")
    a("--slurm-gpus", type=int, help="GPUs per Slurm job (default 0)")
    a("-v", "--verbose", action="store_true", help="log every failed object")
    return p


def load_config_file(path: str) -> dict:
    from segcore import config as segcore_config

    from .runner import ConfigError

    try:
        return segcore_config.load_config_file(path, known=DEFAULTS)
    except segcore_config.ConfigFileError as e:
        raise ConfigError(str(e)) from None


# option types, checked for values from a config file (argparse checks the flags)
INT_OPTS = ("threads", "warmup", "seed", "limit", "shards", "slurm_timeout_min", "slurm_cpus", "slurm_gpus", "flush_every")
FLOAT_OPTS = ("min_area", "max_area")
BOOL_OPTS = ("boundary", "retry_failed", "report", "progress", "latest", "download")
STR_OPTS = ("results", "run", "weights", "mode", "device", "executor", "shard")
MAX_THREADS_PER_CORE = 4


def _check_types(opts: dict, source: str) -> None:
    from .runner import ConfigError

    for k, v in opts.items():
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if k in INT_OPTS and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{source}: {k} = {v!r}: {flag} takes a whole number")
        if k in FLOAT_OPTS and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{source}: {k} = {v!r}: {flag} takes a number")
        if k in BOOL_OPTS and not isinstance(v, bool):
            raise ConfigError(f"{source}: {k} = {v!r}: takes true or false")
        if k in STR_OPTS and not isinstance(v, (str, int)) or k in ("model", "data") and not isinstance(v, (str, list)):
            raise ConfigError(f"{source}: {k} = {v!r}: takes a text value")
        if k in ("model", "data") and isinstance(v, list) and not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{source}: {k} = {v!r}: takes text values")


def check_run_name(run: str) -> None:
    """A run is one folder directly under --results: `latest` (the link to the last run), '.', '..', paths and
    hidden names would make the report point or write outside it."""
    from .report import LATEST
    from .runner import ConfigError

    if not run or run in (".", "..", LATEST) or "/" in run or os.sep in run or run.startswith(".") or "\0" in run:
        raise ConfigError(f"--run {run!r}: give a plain folder name under --results (no '/', not '.', '..', a name "
                          f"starting with '.' or {LATEST!r}, which is the link to the last run)")


def resolve(args: argparse.Namespace) -> dict:
    """defaults < config file < command line."""
    from segcore.datasets import dataset_fingerprint, split_specs
    from segcore.prompt_protocols import ORACLE, ProtocolError, parse_protocol

    from .runner import ConfigError

    opts = dict(DEFAULTS)
    if args.config:
        from_file = load_config_file(args.config)
        _check_types(from_file, f"config file {args.config}")
        opts.update(from_file)
    for k, v in vars(args).items():
        if k in ("config", "verbose", "list_models") or v is None:
            continue
        opts[k] = v
    for k in ("model", "data"):
        v = opts[k]
        items = v if isinstance(v, list) else [v]
        split = split_specs if k == "data" else (lambda t: [x.strip() for x in t.split(",") if x.strip()])
        opts[k] = [s for item in items for s in split(str(item))]
    m = re.fullmatch(r"(\d+)/(\d+)", str(opts["shard"]))
    if not m:
        raise ConfigError(f"--shard {opts['shard']!r}: expected k/n, e.g. 0/4")
    opts["shard"] = (int(m.group(1)), int(m.group(2)))
    for k, lo in (("threads", 1), ("warmup", 0), ("shards", 1), ("flush_every", 1), ("seed", 0)):
        if opts[k] is not None and int(opts[k]) < lo:
            raise ConfigError(f"--{k.replace('_', '-')} must be ≥ {lo}, got {opts[k]}")
    max_threads = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
    if opts["threads"] is not None and int(opts["threads"]) > max_threads:
        raise ConfigError(f"--threads {opts['threads']}: this machine has {os.cpu_count()} cores; at most {max_threads}")
    for k in ("limit", "min_area", "max_area"):
        if opts[k] is not None and not math.isfinite(float(opts[k])):
            raise ConfigError(f"--{k.replace('_', '-')} {opts[k]}: not a finite number")
        if opts[k] is not None and float(opts[k]) < 0:
            raise ConfigError(f"--{k.replace('_', '-')} must be ≥ 0")
    if opts["limit"] is not None and int(opts["limit"]) == 0:
        raise ConfigError("--limit 0 selects no object; leave it out to run every object")
    if opts["min_area"] is not None and opts["max_area"] is not None and opts["min_area"] > opts["max_area"]:
        raise ConfigError("--min-area is larger than --max-area")
    try:
        spec = parse_protocol(opts["prompt"])
    except ProtocolError as e:
        raise ConfigError(str(e)) from None
    opts["prompt"] = str(spec)
    if opts["prompts"] and spec.kind != ORACLE:
        raise ConfigError("give --prompt or --prompts (a saved set carries its own protocol), not both")
    opts["dataset_fingerprints"] = {d: dataset_fingerprint(d) for d in opts["data"]}
    if not opts["run"]:
        fp = hashlib.sha256("".join(opts["dataset_fingerprints"][d] for d in opts["data"]).encode()).hexdigest()[:8]
        ds = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", _short_name(d)) for d in opts["data"])
        if opts["prompts"]:
            tag = "_replay-" + hashlib.sha256(str(Path(opts["prompts"]).resolve()).encode()).hexdigest()[:8]
        else:
            tag = "" if spec.kind == ORACLE else "_" + spec.slug()
        opts["run"] = ("+".join(opts["model"]) + "_" + ds + (f"_limit{opts['limit']}" if opts["limit"] else "") + tag
                       + "_" + fp)
    check_run_name(str(opts["run"]))
    return opts


def _short_name(spec: str) -> str:
    from segcore.datasets import parse_spec

    try:
        name, path, split, _ = parse_spec(spec)
    except ValueError:
        return "data"
    return name or (path.stem + (f"-{split}" if split and split != "eval" else ""))


def to_run_config(opts: dict, config_file=None, shard=None):
    from .runner import RunConfig

    return RunConfig(
        models=opts["model"], datasets=opts["data"], run_dir=str(Path(opts["results"]) / opts["run"]),
        weights=opts["weights"], mode=opts["mode"], backend=opts["backend"], device=opts["device"], threads=opts["threads"],
        warmup=int(opts["warmup"]), seed=int(opts["seed"]), limit=opts["limit"], min_area_ratio=opts["min_area"],
        max_area_ratio=opts["max_area"], shard=shard or opts["shard"], boundary=bool(opts["boundary"]),
        retry_failed=bool(opts["retry_failed"]), flush_every=int(opts["flush_every"]), progress=bool(opts["progress"]),
        config_file=config_file, prompt=opts["prompt"], prompts_file=opts["prompts"],
        extra={"executor": opts["executor"], "command_line": " ".join(sys.argv), "download": opts["download"],
               "dataset_fingerprints": opts["dataset_fingerprints"]},
    )


def _run_shard(cfg) -> dict:
    """Slurm job body: one shard into the shared run folder."""
    from dataclasses import asdict

    from .runner import Runner

    counters = Runner(cfg).run()
    return asdict(counters)


def run_slurm(opts: dict, config_file) -> None:
    """Submit one job per shard (submitit), wait for all, then the caller merges and reports."""
    import submitit

    from .runner import Runner

    n = int(opts["shards"])
    cfgs = [to_run_config(opts, config_file, shard=(k, n)) for k in range(n)]
    for c in cfgs:
        c.progress = False
    first = Runner(cfgs[0])
    print_resolutions(first)
    first.prepare()  # configuration errors before anything is submitted
    folder = Path(cfgs[0].run_dir) / "slurm"
    cluster = "local" if opts["executor"] == "submitit-local" else "slurm"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = dict(timeout_min=int(opts["slurm_timeout_min"]), name="flip-bench")
    if cluster == "slurm":
        params["cpus_per_task"] = int(opts["slurm_cpus"])
    if opts["slurm_partition"]:
        params["slurm_partition"] = opts["slurm_partition"]
    if int(opts["slurm_gpus"]):
        params["gpus_per_node"] = int(opts["slurm_gpus"])
    ex.update_parameters(**params)
    jobs = ex.map_array(_run_shard, cfgs)
    logging.info("submitted %d jobs (%s); waiting", len(jobs), ", ".join(j.job_id for j in jobs))
    for j in jobs:
        logging.info("job %s: %s", j.job_id, j.result())


def print_resolutions(runner) -> None:
    """Which weights each model name means on this machine, and why: before any work, one line per model."""
    for line in runner.resolution_lines():
        print(line, flush=True)


def print_models() -> int:
    """--list-models: every registered name with its weights state, without importing torch."""
    from segcore import registry

    from .models import names

    for name in names():
        e = registry.get(name)
        here = e.local_files()
        state = "no files needed" if here == [] else ("weights here" if here else "weights missing")
        rule = (e.extra or {}).get("mask_rule")
        print(f"{name:34s} {state:16s} {e.description}" + (f"; mask rule {rule}" if rule else ""))
    return 0


class Interrupted(KeyboardInterrupt):
    """SIGTERM (Slurm, timeout, docker stop) handled as Ctrl-C: the record writer flushes what it holds."""


def _on_sigterm(signum, frame):
    raise Interrupted()


def main(argv=None) -> int:
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals can only be handled there
        return _main(argv)
    before = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Interrupted) else "interrupted"
        print(f"{what}; finished objects are written: rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, before)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_models:
        return print_models()
    from .runner import ConfigError, Runner

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("benchmark").setLevel(logging.INFO if args.verbose else logging.ERROR)
    opts = {}
    try:
        opts = resolve(args)
        if opts["executor"] in ("slurm", "submitit-local"):
            run_slurm(opts, args.config)
            counters = None
        else:
            cfg = to_run_config(opts, args.config)
            runner = Runner(cfg)
            print_resolutions(runner)
            counters = runner.run()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk that fills up or a folder that turns read-only during the run
        where = e.filename or opts.get("results")
        print(f"error: cannot write {where}: {e.strerror or e}; finished objects are kept, rerun to resume", file=sys.stderr)
        return 3
    run_dir = Path(opts["results"]) / opts["run"]
    if counters is not None:
        from .runner import OUTCOMES

        parts = ", ".join(f"{getattr(counters, k)} {k.replace('_', ' ')}" for k in OUTCOMES if getattr(counters, k) or k in ("ok", "failed"))
        print(f"records in {run_dir}: {counters.objects_in_files} objects in the files (× models): {parts}")
        for r in counters.failures[:5]:
            print(f"  failed: {r}")
    if opts["shard"][1] > 1 and opts["executor"] == "local":
        print(f"shard {opts['shard'][0]}/{opts['shard'][1]} done. When every shard has finished: "
              f"python -m benchmark.report {run_dir} --merge")
    if opts["report"] and (opts["shard"][1] == 1 or opts["executor"] != "local"):
        from segcore.records import record_files

        from .report import make_report

        if record_files(run_dir):
            try:
                out = make_report(run_dir, merge=True, latest=opts["latest"])
            except (OSError, ValueError) as e:
                print(f"error: report of {run_dir}: {e}", file=sys.stderr)
                return 3
            summary = run_dir / "summary.txt"
            if summary.is_file():
                print("\n" + summary.read_text().rstrip() + "\n")
            print(f"report: {out}")
        else:
            print(f"no records in {run_dir}: no report")
    why = counters.nothing_succeeded() if counters is not None else None
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0
