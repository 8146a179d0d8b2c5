"""The run loop: plan → skip what is done → run the rest → records. One image is decoded once, set once on the
model, and all its selected objects are predicted in one call."""
from __future__ import annotations

import json
import os
import logging
import re
import time
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from segcore.prompt import EMPTY_MASK, PromptError, box_from_mask, prompts_from_masks
from segcore import prompt_protocols as pp

from . import models as model_registry
from segcore.datasets import Dataset, DatasetError, ItemError, Selection, open_dataset, select_counted
from .machine import code_version, machine_info
from .timing import MODEL_PHASES, amortised, object_phases, tokens_of
from segcore.atomic import atomic_write_text, stale_tmp_files
from segcore.metrics import object_metrics
from segcore.records import SETTINGS_COLUMNS, STATUS_FAILED, STATUS_MISS, STATUS_OK, RecordWriter, key_of, make_row, read_rows

# Ground-truth masks of one image decoded at once (and as many predictions): 3,000 objects of a 1000×1000 image
# would otherwise hold 3 GB of masks. One set_image per image stays; predict runs per batch.
MASK_BUDGET_PIXELS = 1 << 26
STALE_TMP_SECONDS = 600  # a part file's temp older than this was left by a killed run (a write takes milliseconds)

log = logging.getLogger("benchmark")


class ConfigError(ValueError):
    """Stops the run before any work starts."""


@dataclass
class RunConfig:
    models: list  # registry names ("flip-tiny.authors", "sam-b") or built Segmenter objects
    datasets: list[str]
    run_dir: str
    weights: str | None = None
    mode: str = "5sigma"
    backend: str | None = None  # None: each model's default ("auto"); else passed to every model's builder
    device: str | None = None
    threads: int | None = None
    warmup: int = 2
    seed: int = 0
    limit: int | None = None
    min_area_ratio: float | None = None
    max_area_ratio: float | None = None
    shard: tuple[int, int] = (0, 1)
    boundary: bool = True
    retry_failed: bool = False
    flush_every: int = 200
    progress: bool = True
    config_file: str | None = None
    prompt: str = "oracle"  # prompt protocol (segcore.prompt_protocols): oracle, box-jitter:σ,cap, ...
    prompts_file: str | None = None  # replay a saved prompt set (a prompts.csv or a run folder) instead
    extra: dict = field(default_factory=dict)

    def selection(self) -> Selection:
        return Selection(self.limit, self.seed, self.min_area_ratio, self.max_area_ratio, tuple(self.shard))


# Where each object of each dataset file ends up, per model: exactly one of these. Their sum is objects_in_files.
OUTCOMES = ("ok", "failed", "missed", "empty_masks_skipped", "area_filtered", "crowd_skipped", "image_not_in_file",
            "other_split", "not_sampled", "other_shard", "not_in_prompt_set", "already_done")


@dataclass
class Counters:
    objects_in_files: int = 0  # annotations in the dataset files × models: what the outcomes below add up to
    ok: int = 0
    failed: int = 0
    missed: int = 0  # detections protocol: no detection matched the object (recorded with status miss)
    empty_masks_skipped: int = 0  # mask decoded with no pixel
    area_filtered: int = 0  # mask outside --min-area/--max-area
    crowd_skipped: int = 0  # COCO iscrowd annotations (regions, not objects)
    image_not_in_file: int = 0  # annotation whose image id is not among the file's images
    other_split: int = 0  # ObjaScale image of another split
    not_sampled: int = 0  # left out by --limit
    other_shard: int = 0  # in another shard's images
    not_in_prompt_set: int = 0  # --prompts replay: the saved set has no prompt for the object
    already_done: int = 0  # record from an earlier invocation (resume)
    failures: list = field(default_factory=list)
    failure_kinds: dict = field(default_factory=dict)  # "image" / "mask" / "predict" ... -> count
    by_model_dataset: dict = field(default_factory=dict)  # "model | dataset" -> {outcome: count}

    def add(self, outcome: str, n: int = 1, where: str | None = None) -> None:
        if not n:
            return
        setattr(self, outcome, getattr(self, outcome) + n)
        if where is not None:
            d = self.by_model_dataset.setdefault(where, {})
            d[outcome] = d.get(outcome, 0) + n

    def fail(self, reason: str, where: str | None = None, kind: str = "other"):
        self.add("failed", 1, where)
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1
        if len(self.failures) < 200:
            self.failures.append(reason)
        log.warning("failed: %s", reason)

    def accounted(self) -> int:
        return sum(getattr(self, k) for k in OUTCOMES)

    def summary(self) -> dict:
        d = asdict(self)
        d["counters_add_up"] = self.accounted() == self.objects_in_files
        return d

    already_ok = 0  # of already_done, the objects whose earlier record is ok (not a field: no report column)
    shard = (0, 1)  # the shard this invocation ran (not a field), named when nothing succeeded

    def nothing_succeeded(self) -> str | None:
        """Why no selected object has succeeded, in this invocation or an earlier one of the run; None if some did."""
        if self.ok or self.already_ok:
            return None
        k, n = self.shard
        if n > 1 and not (self.failed or self.already_done or self.empty_masks_skipped or self.area_filtered):
            return (f"nothing succeeded: shard {k}/{n} got no object of the selection (all {self.other_shard} "
                    f"selected objects are in other shards: the selection has fewer images than shards)")
        where = f"shard {k}/{n}: " if n > 1 else ""
        return "nothing succeeded: " + where + self._why_nothing()

    def _why_nothing(self) -> str:
        if not self.failed and self.already_done:
            return (f"the {self.already_done} selected object(s) failed in earlier invocations "
                    "(see records; rerun with --retry-failed after fixing the cause)")
        if self.failed:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.failure_kinds.items(), key=lambda kv: -kv[1]))
            hint = ""
            if set(self.failure_kinds) == {"image"}:
                hint = " Every image failed to load: check the image folder (FILE.json::IMAGE_DIR) and the files."
            return f"{self.failed} object(s) failed ({kinds}); first: {self.failures[0]}.{hint}"
        return (f"no object was run ({self.empty_masks_skipped} empty masks skipped, "
                f"{self.area_filtered} filtered by area)")


def _atomic_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def check_writable(folder: Path, min_free_bytes: int = 16 << 20) -> None:
    """ConfigError, before any work, when `folder` cannot be created and written (read-only, under a file, a
    nearly full disk). Creates nothing: the probe goes to the nearest folder that exists."""
    p = Path(os.path.abspath(folder))
    while not p.exists() and not p.is_symlink():
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"cannot create {folder}: {p} is a {'file' if p.is_file() else 'non-folder'}, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write in {p} (permission denied or read-only); choose another --results")
    try:
        st = os.statvfs(p)
        free = st.f_bavail * st.f_frsize
    except OSError:
        return
    if free < min_free_bytes:
        raise ConfigError(f"{p}: only {free // 1024} KiB free on its disk; free space or choose another --results")


@contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op thread count for the duration of a run; the caller's setting comes back afterwards.
    When no model has loaded torch (model-free references, NumPy models) it is not loaded for this."""
    if "torch" not in sys.modules:
        yield threads
        return
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


class Runner:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.counters = Counters()
        self.counters.shard = tuple(cfg.shard)
        # configuration errors surface here, before any work
        if not cfg.models:
            raise ConfigError("no model given")
        if not cfg.datasets:
            raise ConfigError("no dataset given")
        k, n = cfg.shard
        if not (n >= 1 and 0 <= k < n):
            raise ConfigError(f"--shard {k}/{n}: need 0 ≤ k < n")
        try:
            self.datasets: list[Dataset] = [open_dataset(d) for d in cfg.datasets]
            for d in self.datasets:
                d.index()  # duplicated ids, broken index files: here, before any work
        except (DatasetError, ValueError) as e:
            raise ConfigError(str(e)) from None
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"two datasets share a name {names}; name them with NAME=PATH")
        self.protocol, self.prompt_set = self._prompt_source()
        self.protocol_name = self.prompt_set.protocol if self.prompt_set else str(self.protocol)
        self._matched: dict = {}  # (dataset, image id) -> {object id: PromptRow} (detections: matched once per image)
        self._prompt_writer = None
        # records are keyed by dataset name, so the resume guard compares content per name: another spelling of
        # the same path (a trailing /, NAME= set to the default name) is the same dataset
        fps = (cfg.extra or {}).get("dataset_fingerprints") or {}
        by_name = {d.name: fps[spec] for spec, d in zip(cfg.datasets, self.datasets) if spec in fps}
        if by_name:
            cfg.extra = {**cfg.extra, "dataset_fingerprints_by_name": by_name}
        self.models = []
        self.resolutions: dict[str, dict] = {}  # model label -> which weights its name meant here, and why
        for spec in cfg.models:
            if isinstance(spec, str):
                try:
                    m = model_registry.create(spec, weights=cfg.weights, mode=cfg.mode, device=cfg.device, seed=cfg.seed,
                                              download=cfg.extra.get("download"), backend=cfg.backend)
                    # after building: a file fetched with --download is found where it now lies
                    self.resolutions[self.label(m)] = model_registry.resolution(spec, cfg.weights, cfg.mode,
                                                                                 download=bool(cfg.extra.get("download"))).describe()
                except model_registry.ModelError as e:
                    raise ConfigError(str(e)) from None
                except Exception as e:  # any failure to build a model is a configuration error, never a traceback
                    raise ConfigError(f"{spec}: cannot build the model ({type(e).__name__}: {e})") from None
            else:  # a live model (the trainer's, a user's): anything with the Segmenter protocol
                m = spec
                missing = [a for a in ("name", "num_parameters", "weights_id", "set_image", "predict") if not hasattr(m, a)]
                if missing:
                    raise ConfigError(f"model object {m!r} lacks {missing}: it does not implement the Segmenter protocol")
            self.models.append(m)
            self.resolutions.setdefault(self.label(m), {"requested": repr(m), "resolved": self.label(m), "files": [],
                                                        "reason": "a model object passed in by the caller",
                                                        "line": f"{self.label(m)}: a model object passed in by the caller"})
        keys = [(self.label(m), str(m.weights_id)) for m in self.models]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"a model is listed twice: {[k[0] for k in keys]}")

    def resolution_lines(self) -> list[str]:
        """One line per model: `name → resolved entry (why)`, printed by the CLI before the run."""
        return [r["line"] for r in self.resolutions.values()]

    def _prompt_source(self):
        """The prompt protocol, or the saved prompt set to replay: configuration errors here, before any work."""
        cfg = self.cfg
        try:
            if cfg.prompts_file:
                if pp.parse_protocol(cfg.prompt).kind != pp.ORACLE:
                    raise ConfigError("give --prompt or --prompts (a saved set carries its own protocol), not both")
                return None, pp.PromptSet(cfg.prompts_file)
            spec = pp.parse_protocol(cfg.prompt)
            dets = None
            if spec.kind == pp.DETECTIONS:
                ids = {e.image_id for d in self.datasets for e in d.index()}
                dets = pp.load_detections(spec.path, ids)
                if dets.skipped:
                    log.warning("detections %s: %s", spec.path, dets.summary())
            return pp.PromptProtocol(spec, cfg.seed, dets), None
        except pp.ProtocolError as e:
            raise ConfigError(str(e)) from None

    def prompt_info(self) -> dict:
        """What run.json says about the prompts: protocol, description, replayed file, detection counts."""
        d = {"protocol": self.protocol_name}
        if self.prompt_set is not None:
            d.update(replayed_from=self.prompt_set.path, sha256=self.prompt_set.sha256(), prompts=len(self.prompt_set))
        else:
            d["description"] = self.protocol.spec.describe()
            if self.protocol.detections is not None:
                d["detections"] = self.protocol.detections.summary()
        return d

    @staticmethod
    def label(model) -> str:
        """The name records carry: the model's full registry name (weights tag and mode included)."""
        return str(model.name)

    @staticmethod
    def settings_of(model) -> dict:
        """Inference settings that change a model's numbers (FLIP: mode, sampler rule, τ, c, N, seed) and what ran
        (backend, onnxruntime and torch versions)."""
        get = getattr(model, "settings", None)
        st = get() if callable(get) else {}
        return {k: st.get(k) for k in SETTINGS_COLUMNS if k in st}

    # ------------------------------------------------------------------ plan
    @staticmethod
    def where(model, ds) -> str:
        return f"{Runner.label(model)} | {ds.name}"

    def plan(self):
        """The work list; every object of every dataset file is counted once per model (Counters). An empty
        selection is a configuration error, raised before run.json is written."""
        sel = self.cfg.selection()
        done = {}  # key -> earlier status; failed records are redone with --retry-failed
        try:
            earlier = read_rows(self.run_dir) if self.run_dir.exists() else []
        except ValueError as e:  # another schema, a damaged part file: named, before any work
            raise ConfigError(f"cannot resume {self.run_dir}: {e}") from None
        for r in earlier:
            if not (self.cfg.retry_failed and r["status"] == STATUS_FAILED):
                done[key_of(r)] = r["status"]
        selections = {}
        for ds in self.datasets:
            chosen, counts = select_counted(ds, sel)
            selected = sum(len(o) for _, o in chosen) + counts.get("other_shard", 0)
            if selected == 0:
                parts = {**ds.skipped, **counts}
                why = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in parts.items()) or "the file holds no object"
                split_hint = ""
                if counts.get("other_split") or ds.skipped.get("other_split"):
                    split_hint = f"; the objects are in another split: DIR#all runs every split, DIR#SPLIT one of them"
                raise ConfigError(f"dataset {ds.name}: the selection is empty ({ds.num_annotations()} objects in the "
                                  f"file; {why}); check --limit, --min-area/--max-area and the split (#SPLIT){split_hint}")
            selections[ds.name] = (chosen, counts)
        work = []
        for model in self.models:
            for ds in self.datasets:
                where = self.where(model, ds)
                chosen, counts = selections[ds.name]
                self.counters.add("objects_in_files", ds.num_annotations(), where)
                for k, v in {**ds.skipped, **counts}.items():
                    self.counters.add(k, v, where)
                for entry, objs in chosen:
                    keys = [(self.label(model), str(model.weights_id), ds.name, entry.image_id, o.object_id) for o in objs]
                    todo = [o for o, k in zip(objs, keys) if k not in done]
                    self.counters.add("already_done", len(objs) - len(todo), where)
                    self.counters.already_ok += sum(done.get(k) == STATUS_OK for k in keys)
                    if todo:
                        work.append((model, ds, entry, todo))
        return work

    def check_resume(self) -> None:
        """A run folder holding records of another version of a dataset is a configuration error."""
        meta_path = self.run_dir / "run.json"
        try:
            prev = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"{meta_path} is unreadable ({e}); choose another --run or delete the folder") from None
        if not isinstance(prev, dict):
            raise ConfigError(f"{meta_path} holds a json {type(prev).__name__}, not a run description; choose another "
                              "--run or delete the folder")
        if prev:  # one protocol per run folder: runs with different prompts are never averaged together
            old = (prev.get("prompts") or {}).get("protocol", pp.ORACLE) if isinstance(prev.get("prompts"), dict) else pp.ORACLE
            if old != self.protocol_name:
                raise ConfigError(f"run folder {self.run_dir} holds records made with prompts {old!r}, this run uses "
                                  f"{self.protocol_name!r}; choose another --run (runs with different prompts are "
                                  "never mixed)")
        settings = prev.get("settings") if isinstance(prev.get("settings"), dict) else {}
        extra = settings.get("extra") if isinstance(settings.get("extra"), dict) else {}
        old_fp = extra.get("dataset_fingerprints_by_name")
        if not isinstance(old_fp, dict):  # older run.json: fingerprints by spec; the datasets list gives the names
            by_spec = extra.get("dataset_fingerprints") if isinstance(extra.get("dataset_fingerprints"), dict) else {}
            specs = settings.get("datasets") if isinstance(settings.get("datasets"), list) else []
            descs = prev.get("datasets") if isinstance(prev.get("datasets"), list) else []
            old_fp = {d.get("name"): by_spec[s] for s, d in zip(specs, descs) if isinstance(d, dict) and s in by_spec}
        new_fp = (self.cfg.extra or {}).get("dataset_fingerprints_by_name") or {}
        changed = sorted(d for d in set(old_fp) & set(new_fp) if old_fp[d] != new_fp[d])
        if changed:
            raise ConfigError(f"run folder {self.run_dir} holds records of a different version of dataset(s) {changed} "
                              "(files changed since); choose another --run or delete the folder")

    def prepare(self):
        """Every check that can stop the run, then the work list; nothing is written yet."""
        check_writable(self.run_dir)
        self.check_resume()
        return self.plan()

    def write_meta(self, threads: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.run_dir / "run.json"
        prev = json.loads(meta_path.read_text()) if meta_path.is_file() else {}  # check_resume read it already
        cfg = asdict(self.cfg)
        cfg["models"] = [self.label(m) for m in self.models]
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        models = {self.label(m): self.describe_model(m) for m in self.models}
        invocation = {"started": now, "argv": list(self.cfg.extra.get("argv") or sys.argv), "settings": cfg,
                      "prompts": self.prompt_info(),
                      "models": models, "torch_threads": threads, "machine": machine_info(),
                      "code_version": code_version(), "time_zone": time.strftime("%Z, UTC%z")}
        if self.cfg.config_file:
            try:
                invocation["config_file_text"] = Path(self.cfg.config_file).read_text()
            except OSError:
                pass
        previous = prev.get("invocations")
        previous = previous if isinstance(previous, list) else []
        meta = {
            "created": prev.get("created", now),
            "updated": now,
            "settings": cfg,  # the latest invocation's, as before; every invocation is in `invocations`
            "torch_threads": threads,
            "machine": invocation["machine"],
            "models": {**(prev.get("models") if isinstance(prev.get("models"), dict) else {}), **models},
            "datasets": [d.describe() for d in self.datasets],
            "prompts": invocation["prompts"],
            "invocations": previous + [invocation],
        }
        _atomic_json(meta_path, meta)

    def describe_model(self, m) -> dict:
        from segcore import registry

        d = {"weights_id": str(m.weights_id), "num_parameters": int(m.num_parameters), **self.settings_of(m),
             "resolution": self.resolutions.get(self.label(m))}
        try:
            entry = registry.get(self.label(m))
            d.update(registry_name=entry.name, description=entry.description, convention=entry.convention)
        except (registry.ModelError, ValueError):
            try:  # relabelled by its weights file (benchmark.models.relabel_by_weights): the architecture's entry
                entry = registry.get(registry.split_name(self.label(m))[0])
                d.update(registry_name=self.label(m), convention=entry.convention,
                         description=f"{entry.model} with the weights file {m.weights_id}")
            except (registry.ModelError, ValueError):
                d.update(registry_name=None, description="a model object passed in by the caller")
        return d

    # ------------------------------------------------------------------ run
    def warm_up(self, work) -> None:
        """Untimed calls on the first planned image of each model: excluded from every record."""
        if self.cfg.warmup <= 0:
            return
        seen = set()
        for model, ds, entry, todo in work:
            if self.label(model) in seen:
                continue
            seen.add(self.label(model))
            try:
                image = ds.load_image(entry)
                ids = [o.object_id for o in todo[:4]]
                made = prompts_from_masks(ds.load_masks(entry, ids), ids, np.shape(image), entry.image_id)
                prompts = [p.prompt for p in made if p.prompt is not None]
                if not prompts:
                    continue
                for _ in range(self.cfg.warmup):
                    model.set_image(image)
                    model.predict(prompts[:1])
            except Exception as e:  # warm-up problems show up again, per object, in the real run
                log.warning("warm-up of %s on image %s failed: %s", self.label(model), entry.image_id, e)

    def run(self) -> Counters:
        with torch_threads(self.cfg.threads) as threads:
            return self._run(threads)

    def _run(self, threads: int) -> Counters:
        work = self.prepare()  # configuration errors stop here, before run.json
        self.write_meta(threads)
        total = sum(len(t) for *_, t in work)
        log.info("%d objects to run (%d already done)", total, self.counters.already_done)
        self.warm_up(work)
        from tqdm.auto import tqdm

        for p in stale_tmp_files(self.run_dir / "records", STALE_TMP_SECONDS) + stale_tmp_files(self.run_dir, STALE_TMP_SECONDS):
            p.unlink(missing_ok=True)  # temp files of a killed invocation (kill -9)
        k, n = self.cfg.shard
        bar = tqdm(total=total, unit="obj", disable=not self.cfg.progress, dynamic_ncols=True, desc="benchmark")
        with RecordWriter(self.run_dir, tag=f"s{k}of{n}", flush_every=self.cfg.flush_every) as writer, \
                pp.PromptSetWriter(self.run_dir, tag=f"s{k}of{n}") as self._prompt_writer:
            for model, ds, entry, todo in work:
                for row in self.run_image(model, ds, entry, todo):
                    writer.add(row)
                bar.update(len(todo))
                bar.set_postfix(failed=self.counters.failed, model=self.label(model), refresh=False)
        bar.close()
        summary = self.counters.summary()
        summary["shard"] = f"{k}/{n}"
        _atomic_json(self.run_dir / f"summary-{k}of{n}.json", summary)
        return self.counters

    def _base(self, model, ds, entry, object_id, **kw) -> dict:
        return make_row(model=self.label(model), weights_id=str(model.weights_id), num_parameters=int(model.num_parameters),
                        dataset=ds.name, image_id=entry.image_id, object_id=object_id, prompt=self.protocol_name,
                        shard=f"{self.cfg.shard[0]}/{self.cfg.shard[1]}", **kw)

    def _failed(self, model, ds, entry, object_id, reason: str, **kw) -> dict:
        kind = re.split(r"[:\s]", reason, maxsplit=1)[0] or "other"  # image / mask / prompt / predict / set_image ...
        self.counters.fail(f"{self.label(model)} {ds.name} image {entry.image_id} object {object_id}: {reason}",
                           self.where(model, ds), kind)
        return self._base(model, ds, entry, object_id, status=STATUS_FAILED, reason=reason, **kw)

    def run_image(self, model, ds, entry, todo) -> list[dict]:
        """Every selected object of one image: the image decoded and set once, masks decoded and predicted in
        batches of at most MASK_BUDGET_PIXELS pixels (one batch for all but huge object counts)."""
        rows = []
        ids = [o.object_id for o in todo]
        t0 = time.perf_counter()
        try:
            image = ds.load_image(entry)
            image = model_registry.check_image(image, f"image {entry.image_id}")
        except Exception as e:  # whatever the adapter raises costs only this image's objects
            msg = str(e) if isinstance(e, (ItemError, ValueError, TypeError)) else f"{type(e).__name__}: {e}"
            return [self._failed(model, ds, entry, oid, f"image: {msg}") for oid in ids]
        h, w = image.shape[:2]
        t_image = time.perf_counter() - t0
        step = max(1, MASK_BUDGET_PIXELS // (h * w))
        ok_rows, phase_sets, image_state = [], [], {}
        for start in range(0, len(ids), step):
            batch = ids[start:start + step]
            share = t_image * len(batch) / len(ids)  # the image's decoding, shared by the batches
            out = self._run_batch(model, ds, entry, image, batch, share, image_state)
            if out is None:  # set_image failed: every remaining object fails with that reason
                reason = image_state["set_error"]
                rows += [self._failed(model, ds, entry, oid, reason, width=w, height=h) for oid in ids[start:]]
                break
            rows += out[0]
            ok_rows += out[1]
            phase_sets += out[2]
        if ok_rows:  # per-image figures over every batch of the image
            k = image_state["k"]  # objects given to the model, as in a single batch
            per_image = amortised(phase_sets, image_state["after_set"], image_state["wall_set"], k)
            for r in ok_rows:
                r["time_amortised"], r["objects_in_image"] = per_image, k
        return rows + ok_rows

    def _run_batch(self, model, ds, entry, image, ids, t_image_share, state):
        """(failed rows, ok rows, [(None, None, phases, tokens)] of the predictions) for one batch of objects;
        None when set_image raised (the reason is in state["set_error"])."""
        rows, ok_rows = [], []
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        try:
            masks = ds.load_masks(entry, ids)
        except Exception as e:
            msg = str(e) if isinstance(e, (ItemError, ValueError, TypeError)) else f"{type(e).__name__}: {e}"
            return [self._failed(model, ds, entry, oid, f"image: {msg}", width=w, height=h) for oid in ids], [], []
        sel = self.cfg.selection()
        oracle, gts_of = {}, {}
        for op in prompts_from_masks(masks, ids, (h, w), entry.image_id):
            if op.reason == EMPTY_MASK:
                self.counters.add("empty_masks_skipped", 1, self.where(model, ds))
                continue
            if op.reason:
                rows.append(self._failed(model, ds, entry, op.object_id, op.reason, width=w, height=h))
                continue
            if not sel.area_ok(op.prompt.area / (h * w)):  # selection decided on the same pixel count; kept as a guard
                self.counters.add("area_filtered", 1, self.where(model, ds))
                continue
            oracle[op.object_id] = op.prompt
            gts_of[op.object_id] = op.mask
        prompts, objs, gts = [], [], []
        for oid, row in self.prompts_for(ds, entry, oracle).items():
            m, area = gts_of[oid], oracle[oid].area
            sizes = dict(width=w, height=h, area_px=area, area_ratio=area / (h * w))
            if isinstance(row, str):  # the prompt could not be made or replayed
                rows.append(self._failed(model, ds, entry, oid, f"prompt: {row}", **sizes))
                continue
            if row is None:
                self.counters.add("not_in_prompt_set", 1, self.where(model, ds))
                continue
            if row.miss:
                self.counters.add("missed", 1, self.where(model, ds))
                rows.append(self._base(model, ds, entry, oid, status=STATUS_MISS, objects_in_image=len(oracle),
                                       reason=f"no detection with box IoU ≥ {pp.MATCH_IOU:g}", **sizes))
                continue
            prompts.append(row.prompt)
            objs.append(oid)
            gts.append(m)
        del masks
        t_data = t_image_share + time.perf_counter() - t0
        if not objs:
            return rows, [], []
        k = len(objs)
        state["k"] = state.get("k", 0) + k

        if "after_set" not in state:  # one set_image per image, at its first batch with work
            try:
                t1 = time.perf_counter()
                model.set_image(image)
                state["wall_set"] = time.perf_counter() - t1
                state["after_set"] = dict(getattr(model, "timings", {}) or {})
            except Exception as e:
                state["set_error"] = f"set_image raised {type(e).__name__}: {e}"
                return None
        after_set, wall_set = state["after_set"], state["wall_set"]

        results = self._predict_all(model, prompts, after_set, wall_set, k)
        for oid, gt, prompt, (pred, err, phases, tokens) in zip(objs, gts, prompts, results):
            box = prompt.box_xyxy
            common = dict(width=w, height=h, box_x0=box[0], box_y0=box[1], box_x1=box[2], box_y1=box[3],
                          area_px=prompt.area, area_ratio=prompt.area / (h * w), objects_in_image=k)
            if err is None:
                pred = np.asarray(pred)
                if pred.shape != (h, w):
                    err = f"prediction shape {pred.shape} != image {(h, w)}"
            if err is not None:
                rows.append(self._failed(model, ds, entry, oid, err, **common))
                continue
            times = {f"t_{p}": phases.get(p, float("nan")) for p in MODEL_PHASES}
            times["t_data"] = t_data / k
            t_obj = phases["_object"]
            if model_registry.iou_is_meaningful(model.weights_id):
                met = object_metrics(pred, gt, boundary=self.cfg.boundary)
                reason = ""
            else:
                met = {"iou": None, "boundary_iou": None, "pred_area_px": int(np.count_nonzero(pred))}
                reason = f"IoU n/a: weights {model.weights_id!r} (untrained or no model)"
            common.pop("area_px"), common.pop("area_ratio")
            self.counters.add("ok", 1, self.where(model, ds))
            ok_rows.append(self._base(model, ds, entry, oid, status=STATUS_OK, reason=reason,
                                      iou=met["iou"], boundary_iou=met["boundary_iou"], pred_area_px=met["pred_area_px"],
                                      area_px=prompt.area, area_ratio=prompt.area / (h * w), time_object=t_obj,
                                      time_amortised=None, tokens=tokens, **self.settings_of(model), **common, **times))
        # keep only the timings: the predicted masks of this batch are freed before the next one
        return rows, ok_rows, [(None, err, phases, None) for (_, err, phases, _) in results]

    def prompts_for(self, ds, entry, oracle: dict) -> dict:
        """{object id: PromptRow, None (replay: not in the set) or an error text} for the oracle prompts of one
        image, in their order; every row used is added to the run's prompt set."""
        if not oracle:
            return {}
        out = {}
        if self.prompt_set is not None:
            for oid, p in oracle.items():
                try:
                    row = self.prompt_set.get(ds.name, entry.image_id, oid)
                except PromptError as e:
                    out[oid] = str(e)
                    continue
                if row is not None and row.prompt is not None:
                    if (row.prompt.width, row.prompt.height) != (p.width, p.height):
                        out[oid] = (f"the saved prompt was made for a {row.prompt.width}x{row.prompt.height} image, "
                                    f"this one is {p.width}x{p.height}")
                        continue
                    row = replace(row, prompt=replace(row.prompt, area=p.area))
                out[oid] = row
        elif self.protocol.spec.kind == pp.DETECTIONS:
            key = (ds.name, entry.image_id)
            cached = self._matched.get(key, {})
            if not set(oracle) <= set(cached):
                cached = self.protocol.image(ds.name, entry.image_id, oracle, self._gt_boxes(ds, entry, oracle))
                self._matched[key] = cached
            out = {oid: cached[oid] for oid in oracle}
        else:
            for oid, p in oracle.items():
                try:
                    out[oid] = self.protocol.one(ds.name, p)
                except (PromptError, ValueError) as e:
                    out[oid] = str(e)
        if self._prompt_writer is not None:
            self._prompt_writer.add(r for r in out.values() if isinstance(r, pp.PromptRow))
        return out

    @staticmethod
    def _gt_boxes(ds, entry, oracle: dict) -> dict:
        """Tight boxes of every object of the image (detections are matched against all of them, not only the
        selected ones, so a match never depends on the selection)."""
        boxes = {oid: p.box_xyxy for oid, p in oracle.items()}
        rest = [o.object_id for o in entry.objects if o.object_id not in boxes]
        if rest:
            try:
                masks = ds.load_masks(entry, rest)
            except Exception as e:  # the selected objects still get matched among themselves
                log.warning("image %s: masks of unselected objects unreadable for detection matching (%s)", entry.image_id, e)
                masks = {}
            for oid in rest:
                m = masks.get(oid)
                if isinstance(m, np.ndarray) and m.ndim == 2 and m.any():
                    boxes[oid] = box_from_mask(m)
        return boxes

    def _predict_all(self, model, prompts, after_set, wall_set, k):
        """[(mask, error, phases, tokens)] per prompt: one batched call, or one call per prompt if the batch fails
        (so an object that makes the model raise costs only itself)."""
        try:
            t1 = time.perf_counter()
            preds = model.predict(prompts)
            wall = time.perf_counter() - t1
            if len(preds) != len(prompts):
                raise RuntimeError(f"predict returned {len(preds)} masks for {len(prompts)} prompts")
            phases = object_phases(after_set, dict(getattr(model, "timings", {}) or {}), wall_set, wall, k)
            tokens = tokens_of(model, k)
            return [(p, None, phases, t) for p, t in zip(preds, tokens)]
        except Exception as batch_error:
            if k == 1:
                return [(None, f"predict raised {type(batch_error).__name__}: {batch_error}", {}, None)]
            log.info("batched predict failed (%s); retrying one prompt at a time", batch_error)
        out = []
        for p in prompts:
            try:
                t1 = time.perf_counter()
                pred = model.predict([p])
                wall = time.perf_counter() - t1
                if len(pred) != 1:
                    raise RuntimeError(f"predict returned {len(pred)} masks for 1 prompt")
                phases = object_phases(after_set, dict(getattr(model, "timings", {}) or {}), wall_set, wall, 1)
                out.append((pred[0], None, phases, tokens_of(model, 1)[0]))
            except Exception as e:
                out.append((None, f"predict raised {type(e).__name__}: {e}", {}, None))
        return out


def run(cfg: RunConfig) -> Counters:
    return Runner(cfg).run()
