"""Run cycle: plan → skip what is done → render the rest in fresh Blender worker processes → merge outputs."""
from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .assets.hdri import list_hdris
from .assets.objects import ObjectSourceError, split_of
from .assets.selection import load_objects, select_objects
from .config import Config, ConfigError, parse_shard
from .export import build_coco, write_hdf5, write_manifest
from .io import Layout, atomic_write_json, clean_stale_tmp
from .plan import Catalog, plan_image

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("objascale")


class FatalRunError(RuntimeError):
    """The run cannot go on (disk full, output not writable): stop, keep what is done."""


def build_catalog(cfg: Config, download: bool = True) -> tuple[Catalog, list, dict]:
    """Catalogue, HDRIs skipped as unreadable, and the object source's report (skipped downloads/files)."""
    try:
        objects, report = load_objects(cfg, download=download)
        cats, by_cat = select_objects(objects, cfg)
    except ObjectSourceError as e:
        raise ConfigError(str(e)) from None
    hdris, skipped = list_hdris(cfg.hdri_dirs, builtin=not cfg.no_builtin_hdris)
    if not hdris:
        raise ConfigError("no usable HDRI: " + ("pass --hdri-dirs with .exr/.hdr files (--no-builtin-hdris is set)"
                                                if cfg.no_builtin_hdris else
                                                "install bpy (its 8 built-in HDRIs) or pass --hdri-dirs with .exr/.hdr files")
                          + (f"; skipped: {skipped}" if skipped else ""))
    available = len({o.category for o in objects if cfg.split == "all" or split_of(o.id, cfg.eval_fraction) == cfg.split})
    return Catalog(cats, by_cat, objects, hdris, available_categories=available), skipped, report


def check_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"output folder {out} is not writable: {e.strerror or e}") from None


def prepare(cfg: Config, out: Path, cli: dict | None = None) -> tuple[Catalog, dict]:
    """Validate everything before any work starts; write/check config.json."""
    cfg.validate()
    check_output_dir(out)
    # a killed run leaves temp files; a local unsharded run owns the folder, shards only clear hour-old ones
    removed = clean_stale_tmp(out, min_age_s=0 if cfg.executor == "local" and not cfg.shard else 3600)
    if removed:
        log.info("removed %d stale temp files of an interrupted run in %s", removed, out)
    catalog, skipped_hdris, source_report = build_catalog(cfg)
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old.get("plan_hash") != cfg.plan_hash():
            changed = sorted(k for k in old.get("config", {}) if k in cfg.to_dict() and old["config"][k] != cfg.to_dict()[k])
            raise ConfigError(f"{out} was rendered with another configuration (changed: {changed}); "
                              f"use a new --out folder or the same settings")
    meta = {
        "config": cfg.to_dict(), "plan_hash": cfg.plan_hash(), "cli": cli or {}, "seed": cfg.seed,
        "categories": catalog.categories,
        "objects_per_category": {c: len(v) for c, v in catalog.objects_by_category.items()},
        "hdris": [h.__dict__ for h in catalog.hdris], "hdris_skipped": skipped_hdris,
        "object_source_report": source_report,
    }
    atomic_write_json(cfg_path, meta)
    # every object the run may draw, with its licence and attribution (Objaverse: every uid)
    atomic_write_json(out / "objects.json", [o.to_dict() for c in catalog.categories for o in catalog.objects_by_category[c]])
    return catalog, meta


class ChunkRunner:
    """Runs chunks of images in `python -m objascale.blender.worker` subprocesses, with a per-image timeout."""

    worker_module = "objascale.blender.worker"

    def __init__(self, cfg: Config, out: Path, catalog: Catalog, progress: tqdm):
        self.cfg, self.out, self.catalog, self.progress = cfg, out, catalog, progress
        self.lay = Layout(out)
        self.lock = threading.Lock()
        self.fatal: str | None = None
        self.counts = {"done": 0, "skipped": 0, "io_failed": 0}

    def _items(self, indices: list[int]) -> list[dict]:
        return [{"index": i, "plans": [plan_image(self.cfg, self.catalog, i, a) for a in range(self.cfg.max_attempts)]}
                for i in indices]

    def _finish(self, kind: str, i: int, reason: str = "") -> None:
        with self.lock:
            self.counts[kind] += 1
            self.progress.update(1)
            self.progress.set_postfix(done=self.counts["done"], skipped=self.counts["skipped"])
            if kind == "skipped":
                tqdm.write(f"objascale: image {i} skipped: {reason}")
            elif kind == "io_failed":
                tqdm.write(f"objascale: image {i} not written ({reason}); it stays pending for the rerun")

    def _skip(self, i: int, reason: str) -> None:
        atomic_write_json(self.lay.skip_path(i), {"index": i, "status": "skipped", "reason": reason, "attempts": []})
        self._finish("skipped", i, reason)

    def run_chunk(self, indices: list[int]) -> None:
        remaining = list(indices)
        while remaining and self.fatal is None:
            remaining = self._run_process(remaining)

    def _run_process(self, indices: list[int]) -> list[int]:
        """One worker process over `indices`; returns the indices still to do after a timeout or crash."""
        self.lay.logs.mkdir(parents=True, exist_ok=True)
        job_path = self.lay.logs / f"job-{indices[0]:06d}.json"
        atomic_write_json(job_path, {"out": str(self.out), "config": self.cfg.to_dict(), "items": self._items(indices),
                                     "sweethome3d_cache": self.cfg.sweethome3d_dir or None, "tmp_dir": str(self.lay.tmp)})
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        # Blender's own blender_* temp folders go under the dataset's .tmp/, which the next run clears (kill -9)
        self.lay.tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(self.lay.tmp)
        log = (self.lay.logs / f"worker-{indices[0]:06d}.log").open("a", buffering=1)
        proc = subprocess.Popen([sys.executable, "-m", self.worker_module, str(job_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", env=env, cwd=os.getcwd())  # relative paths as the user gave them
        lines: queue.Queue = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        finished: set[int] = set()
        current, deadline = None, time.time() + self.cfg.timeout_s + 120  # startup allowance
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.time()))
                except queue.Empty:
                    proc.kill()
                    proc.wait()
                    if current is not None:
                        self._skip(current, f"timeout: no result after {self.cfg.timeout_s:.0f} s")
                        finished.add(current)
                    else:  # the worker never started an image: give up on this chunk rather than loop
                        for i in indices:
                            if i not in finished:
                                self._skip(i, "worker did not start within the timeout")
                                finished.add(i)
                    break
                if line is None:
                    rc = proc.wait()
                    if self.fatal is not None:  # the image in progress was not written: it stays pending
                        break
                    if current is not None and current not in finished:
                        self._skip(current, f"worker process died (exit code {rc}) while rendering; see {log.name}")
                        finished.add(current)
                    elif rc != 0 and self.fatal is None and not finished:
                        for i in indices:
                            self._skip(i, f"worker failed to start (exit code {rc}); see {log.name}")
                            finished.add(i)
                    break
                if not line.startswith("@@"):
                    log.write(line)
                    continue
                tag, _, rest = line[2:].strip().partition(" ")
                if tag == "START":
                    current, deadline = int(rest), time.time() + self.cfg.timeout_s
                elif tag in ("DONE", "SKIP", "RETRY"):
                    idx, _, reason = rest.partition(" ")
                    finished.add(int(idx))  # RETRY: pending on disk, but not retried within this run
                    current = None
                    self._finish({"DONE": "done", "SKIP": "skipped", "RETRY": "io_failed"}[tag], int(idx), reason)
                elif tag == "FATAL":
                    self.fatal = rest
        finally:
            log.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.fatal is None:
            try:
                job_path.unlink()
            except OSError:
                pass
        return [i for i in indices if i not in finished and self.lay.status(i) == "pending"]


def pending_indices(cfg: Config, out: Path) -> list[int]:
    lay = Layout(out)
    k, n = parse_shard(cfg.shard) if cfg.shard else (0, 1)
    todo = []
    for i in range(cfg.num_images):
        if i % n != k:
            continue
        st = lay.status(i)
        if st == "skipped" and cfg.retry_skipped:
            lay.skip_path(i).unlink(missing_ok=True)
            st = "pending"
        if st == "pending":
            todo.append(i)
    return todo


def render(cfg: Config, out: Path, catalog: Catalog) -> dict:
    todo = pending_indices(cfg, out)
    chunks = [todo[j:j + cfg.chunk_size] for j in range(0, len(todo), cfg.chunk_size)]
    t0 = time.time()
    with tqdm(total=len(todo), desc=f"objascale {out.name}", unit="img", dynamic_ncols=True) as bar:
        runner = ChunkRunner(cfg, out, catalog, bar)
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            list(pool.map(runner.run_chunk, chunks))
    try:
        runner.lay.tmp.rmdir()  # the workers' scratch folder, when no other shard is using it
    except OSError:
        pass
    if runner.fatal:
        raise FatalRunError(runner.fatal)
    return {"rendered": runner.counts["done"], "skipped": runner.counts["skipped"], "io_failed": runner.counts["io_failed"],
            "seconds": time.time() - t0, "todo": len(todo)}


def merge(cfg: Config, out: Path, catalog_categories: list[str]) -> dict:
    manifest = write_manifest(out, cfg.num_images)
    info = {"description": "ObjaScale: single objects rendered by Blender Cycles on HDRI environments",
            "dataset_name": cfg.dataset_name, "split": cfg.split, "seed": cfg.seed, "config": cfg.to_dict(),
            "version": "1"}
    build_coco(out, cfg.num_images, catalog_categories, info)
    from .export import load_records, up_axis_warnings

    warnings = up_axis_warnings(load_records(out, cfg.num_images)[0])
    h5 = None
    if cfg.write_hdf5 and manifest["counts"]["done"] > 0:
        h5 = str(write_hdf5(out, cfg.num_images, cfg.dataset_name, cfg.split))
    return {"manifest_counts": manifest["counts"], "hdf5": h5, "warnings": warnings}


def _slurm_shard(cfg_dict: dict, out: str, k: int, n: int) -> dict:
    cfg = Config(**dict(cfg_dict, shard=f"{k}/{n}", executor="local"))
    catalog, _, _ = build_catalog(cfg, download=False)  # the submitting process downloaded; shards read the cache
    return render(cfg, Path(out), catalog)


def run_slurm(cfg: Config, out: Path) -> list[dict]:
    import submitit

    ex = submitit.AutoExecutor(folder=str(out / "logs" / "slurm"))
    params = dict(timeout_min=cfg.slurm_time_min, cpus_per_task=cfg.slurm_cpus, slurm_array_parallelism=cfg.slurm_shards,
                  name="objascale")
    if cfg.slurm_partition:
        params["slurm_partition"] = cfg.slurm_partition
    ex.update_parameters(**params)
    n = cfg.slurm_shards
    jobs = ex.map_array(_slurm_shard, [cfg.to_dict()] * n, [str(out)] * n, list(range(n)), [n] * n)
    print(f"objascale: submitted {n} shards as job array {jobs[0].job_id.split('_')[0]}; waiting (safe to interrupt: "
          f"rerun with --merge-only to merge later)")
    results = []
    for j in jobs:
        try:
            results.append(j.result())
        except Exception as e:  # one failed shard must not lose the others: its images stay pending
            print(f"objascale: shard job {j.job_id} failed: {str(e).splitlines()[0] if str(e) else e}")
    return results
