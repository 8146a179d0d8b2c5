"""The records file: one flat row per (model, dataset, object), schema written down once and versioned.

Storage is a folder of CSV part files (`records/part-*.csv`). Each flush writes one new part through a temporary
file and os.replace, so a crash never leaves a half-written row and a rerun sees exactly what finished. Shards
write parts into the same folder; `merge()` folds the parts into one `records.csv` (also atomically).
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Iterable

from .atomic import atomic_path

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)  # v1 lacks the inference-settings columns, v1-2 the backend columns, v1-3 the prompt column (read as empty)
PHASE_COLUMNS = ("t_data", "t_preprocess", "t_encoder", "t_decoder", "t_postprocess")
# (name, type): types are str, int, float. Empty cell = missing (NaN for floats).
SCHEMA: tuple[tuple[str, type], ...] = (
    ("schema_version", int),
    ("model", str),
    ("weights_id", str),
    ("num_parameters", int),
    ("dataset", str),
    ("image_id", str),
    ("object_id", str),
    ("status", str),  # ok | failed | miss (no detection prompted the object: IoU 0 in the "with misses" columns)
    ("reason", str),  # why failed, or why IoU is n/a (random weights...)
    ("iou", float),
    ("boundary_iou", float),
    ("area_px", int),
    ("area_ratio", float),
    ("pred_area_px", int),
    ("width", int),
    ("height", int),
    ("box_x0", float),
    ("box_y0", float),
    ("box_x1", float),
    ("box_y1", float),
    ("objects_in_image", int),
    *((c, float) for c in PHASE_COLUMNS),  # seconds, per object: per-image phases counted fully, per-call shared
    ("time_object", float),  # seconds: model time of this object alone (image encoder counted once per object)
    ("time_amortised", float),  # seconds: model time of the whole image / objects in the image
    ("tokens", int),  # FLIP input tokens (patches) for this object; empty for other models
    # inference settings that change the numbers (v2); empty for models without them
    ("mode", str),  # FLIP: 5sigma | hierarchical
    ("sampler_compat", str),  # FLIP patch-sampling rule: authors | exact
    ("tau", float),
    ("coverage", float),
    ("num_tokens", int),  # N, the token budget
    ("seed", int),  # run seed; per-object seeds derive from it and the object's identity
    # what ran (v3): FLIP's onnxruntime and torch backends give masks up to ~0.1 % of a mask's pixels apart
    ("backend", str),  # onnxruntime | torch (the one that ran, never "auto"); empty for model-free references
    ("onnxruntime_version", str),  # empty when onnxruntime did not run
    ("torch_version", str),
    ("prompt", str),  # v4: the prompt protocol (segcore.prompt_protocols), e.g. oracle, box-jitter:0.1,20; empty = oracle
    ("shard", str),
    ("timestamp", float),
)
COLUMNS = tuple(n for n, _ in SCHEMA)
V2_COLUMNS = ("mode", "sampler_compat", "tau", "coverage", "num_tokens", "seed")
V3_COLUMNS = ("backend", "onnxruntime_version", "torch_version")
V4_COLUMNS = ("prompt",)
SETTINGS_COLUMNS = V2_COLUMNS + V3_COLUMNS  # what a model's settings() may put into its records
TYPES = dict(SCHEMA)
KEY = ("model", "weights_id", "dataset", "image_id", "object_id")
STATUS_OK, STATUS_FAILED, STATUS_MISS = "ok", "failed", "miss"


def _fmt(v, t) -> str:
    if v is None:
        return ""
    if t is float:
        v = float(v)
        return "" if math.isnan(v) else repr(v)
    if t is int:
        try:
            return str(int(v))
        except (TypeError, ValueError):
            return ""
    return str(v)


def make_row(**fields) -> dict:
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not in records schema v{SCHEMA_VERSION}: {sorted(unknown)}")
    row = {c: fields.get(c) for c in COLUMNS}
    row["schema_version"] = SCHEMA_VERSION
    if row["timestamp"] is None:
        row["timestamp"] = time.time()
    return row


def key_of(row: dict) -> tuple:
    return tuple(str(row[k]) for k in KEY)


class RecordWriter:
    """Buffers rows and flushes them as new part files (temp + rename, fsync) every `flush_every` rows or
    `flush_seconds` seconds."""

    def __init__(self, run_dir, tag: str = "0", flush_every: int = 200, flush_seconds: float = 30.0):
        self.dir = Path(run_dir) / "records"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tag = f"{tag}-{os.getpid()}-{int(time.time() * 1000)}"
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.buffer: list[dict] = []
        self.parts = 0
        self.written = 0
        self._last = time.monotonic()

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.flush_every or time.monotonic() - self._last > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.buffer:
            return
        path = self.dir / f"part-{self.tag}-{self.parts:06d}.csv"
        write_csv(path, self.buffer)
        self.written += len(self.buffer)
        self.parts += 1
        self.buffer = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()


def write_csv(path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(r.get(c), TYPES[c]) for c in COLUMNS])
        f.flush()
        os.fsync(f.fileno())


def _parse(v: str, t):
    if v == "":
        return float("nan") if t is float else None
    if t is float:
        return float(v)
    if t is int:
        return int(float(v))
    return v


def record_files(run_dir) -> list[Path]:
    run_dir = Path(run_dir)
    files = []
    if (run_dir / "records.csv").is_file():
        files.append(run_dir / "records.csv")
    files += sorted((run_dir / "records").glob("part-*.csv")) if (run_dir / "records").is_dir() else []
    return files


def read_rows(run_dir) -> list[dict]:
    """All rows of a run, later files winning for a repeated key (a retried object replaces its failure)."""
    rows: dict[tuple, dict] = {}
    for path in record_files(run_dir):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or []) - set(SETTINGS_COLUMNS) - set(V4_COLUMNS)
            if missing:
                raise ValueError(f"{path}: not a records file of schema v{SCHEMA_VERSION} (missing {sorted(missing)})")
            for raw in reader:
                row = {c: _parse(raw.get(c) or "", TYPES[c]) for c in COLUMNS}
                if row["schema_version"] not in READABLE_VERSIONS:
                    raise ValueError(f"{path}: schema v{row['schema_version']}, this code reads v{READABLE_VERSIONS}")
                rows[key_of(row)] = row
    return list(rows.values())


def read_frame(run_dir):
    """The run's records as a pandas DataFrame with the schema's dtypes."""
    import pandas as pd

    rows = read_rows(run_dir)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c, t in SCHEMA:
        if t is float:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        elif t is int:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), "")
    return df


def done_keys(run_dir, retry_failed: bool = False) -> set[tuple]:
    return {key_of(r) for r in read_rows(run_dir) if not (retry_failed and r["status"] != STATUS_OK)}


def merge(run_dir) -> int:
    """Fold all part files (from every shard) into records.csv, then delete the parts. Returns the row count."""
    run_dir = Path(run_dir)
    parts = sorted((run_dir / "records").glob("part-*.csv")) if (run_dir / "records").is_dir() else []
    rows = read_rows(run_dir)
    rows.sort(key=lambda r: (r["model"], r["weights_id"], r["dataset"], r["image_id"], r["object_id"]))
    write_csv(run_dir / "records.csv", rows)
    for p in parts:  # only after records.csv holds their rows
        p.unlink()
    return len(rows)
