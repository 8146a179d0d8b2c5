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

from .atomic import PartFileWriter, atomic_path

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


class RecordWriter(PartFileWriter):
    """Buffers rows and flushes them as new part files (temp + rename, fsync) every `flush_every` rows or
    `flush_seconds` seconds."""

    def __init__(self, run_dir, tag: str = "0", flush_every: int = 200, flush_seconds: float = 30.0):
        super().__init__(Path(run_dir) / "records", tag, flush_every, flush_seconds)
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        self._maybe_flush()

    def write_part(self, path: Path, rows: list) -> None:
        write_csv(path, rows)


def write_csv(path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:  # unique temp name (segcore.atomic)
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(r.get(c), TYPES[c]) for c in COLUMNS])
        f.flush()
        os.fsync(f.fileno())


class RecordsError(ValueError):
    """A records file that cannot be read as this schema: one line naming the file (and row) and the cause."""


def _parse(v: str, t, col: str = "?"):
    if v == "":
        return float("nan") if t is float else None
    try:
        if t is float:
            return float(v)
        if t is int:
            x = float(v)
            if not math.isfinite(x) or x != int(x):
                raise ValueError
            return int(x)
    except ValueError:
        raise RecordsError(f"column {col}: {v[:40]!r} is not {'a number' if t is float else 'an integer'}") from None
    return v


_LOCKS: dict = {}


def run_lock(run_dir, timeout: float = 900.0):
    """The run folder's merge lock (filelock, reentrant within a process): merges and reports of one run take
    turns, so no merger reads a records.csv another is replacing or deletes parts another has not folded in."""
    from filelock import FileLock

    path = str(Path(run_dir).resolve() / ".merge.lock")
    if path not in _LOCKS:
        _LOCKS[path] = FileLock(path, timeout=timeout)
    return _LOCKS[path]


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
        for row in _read_file(path):
            rows[key_of(row)] = row
    return list(rows.values())


def _read_file(path: Path) -> list[dict]:
    """The rows of one records file; RecordsError naming the file (and line) for anything that is not one."""
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM added by a spreadsheet is read past
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise RecordsError(f"{path}: empty records file (no header); delete it if it is a leftover")
            missing = set(COLUMNS) - set(reader.fieldnames) - set(SETTINGS_COLUMNS) - set(V4_COLUMNS)
            if missing:
                raise RecordsError(f"{path}: not a records file of schema v{SCHEMA_VERSION} (missing columns "
                                   f"{sorted(missing)[:6]}{' ...' if len(missing) > 6 else ''})")
            for raw in reader:
                try:
                    row = {c: _parse(raw.get(c) or "", TYPES[c], c) for c in COLUMNS}
                except RecordsError as e:
                    raise RecordsError(f"{path} line {reader.line_num}: {e}") from None
                if row["schema_version"] not in READABLE_VERSIONS:
                    raise RecordsError(f"{path} line {reader.line_num}: schema v{row['schema_version']}, this code "
                                       f"reads v{', v'.join(map(str, READABLE_VERSIONS))}")
                out.append(row)
    except UnicodeDecodeError:
        raise RecordsError(f"{path}: binary data, not a CSV records file") from None
    except csv.Error as e:
        raise RecordsError(f"{path}: not a CSV records file ({e})") from None
    except OSError as e:
        raise RecordsError(f"{path}: cannot be read ({e.strerror or e})") from None
    return out


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
    """Fold all part files (from every shard) into records.csv, then delete the parts. Returns the row count.
    Holds the run's lock: a concurrent merge waits, then finds the parts gone and the rows in records.csv."""
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        parts = sorted((run_dir / "records").glob("part-*.csv")) if (run_dir / "records").is_dir() else []
        rows = read_rows(run_dir)
        rows.sort(key=lambda r: (r["model"], r["weights_id"], r["dataset"], r["image_id"], r["object_id"]))
        write_csv(run_dir / "records.csv", rows)
        for p in parts:  # only after records.csv holds their rows
            p.unlink(missing_ok=True)
    return len(rows)
