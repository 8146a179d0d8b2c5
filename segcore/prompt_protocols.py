"""Prompt protocols: how the prompt a model sees is made from an object (docs/prompts.md).

  oracle                      the tight box and the exact Gaussian of the ground-truth mask (segcore.prompt)
  box-jitter[:σ[,cap]]        the SAM paper's box noise: each box coordinate + N(0, σ·side), capped at ±cap px,
                              sub-pixel (never rounded), clipped to the image. Default σ = 0.1, cap = 20.
  gaussian-jitter[:ℓ[,cap]]   the same noise on the Gaussian: box-jitter with σ = ℓ applied to the Gaussian's
                              equivalent box in its principal frame (centre shift and per-axis scale), plus a
                              rotation of spread 2ℓ rad. Default ℓ = 0.1, cap = 20.
  detections=FILE             boxes from a COCO results file, matched to objects (box IoU ≥ 0.5, greedy by score);
                              an object without a match is a miss. The Gaussian is rho_from_box of the box.

Every protocol is one random map per object, applied to both prompt forms (box and Gaussian), so a box model and
FLIP see the same error. Each map is drawn from a generator seeded by (run seed, image id, object id) alone: an
object gets the same prompt alone, third in a shuffled batch, in another shard or a resumed run, and at every
level (the draws are the same normals, scaled): common random numbers across a sweep.

Prompt sets: every run writes the prompts it used (one row per object, floats in repr form so that they read back
bit-exactly); a saved set replays through `PromptSet`. Plain NumPy: importing this never loads torch.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .atomic import PartFileWriter, atomic_path
from .prompt import Prompt, PromptError, pixel_moments_from_rho, rho_from_box, rho_from_pixel_moments

ORACLE, BOX_JITTER, GAUSSIAN_JITTER, DETECTIONS = "oracle", "box-jitter", "gaussian-jitter", "detections"
KINDS = (ORACLE, BOX_JITTER, GAUSSIAN_JITTER, DETECTIONS)
DEFAULT_SIGMA = 0.1  # SAM paper: σ = 10 % of the box side ...
DEFAULT_CAP = 20.0  # ... at most 20 px
MATCH_IOU = 0.5  # a detection prompts an object when their boxes overlap by IoU ≥ this
MIN_SIDE = 0.1  # px: a jittered or clipped box side never falls below this (box models need x1 > x0)
ROTATION_PER_LEVEL = 2.0  # gaussian-jitter rotation spread (rad) per unit level: see rotation_spread()


class ProtocolError(ValueError):
    """A protocol spec or a prompt/detection file that cannot be used at all: a configuration error."""


# ---------------------------------------------------------------- the spec

@dataclass(frozen=True)
class ProtocolSpec:
    kind: str = ORACLE
    level: float = 0.0  # box-jitter σ or gaussian-jitter ℓ (fraction of the side)
    cap: float = DEFAULT_CAP  # px
    path: str | None = None  # detections file

    def __str__(self) -> str:
        """The canonical text, recorded in every record, run.json and prompt set."""
        if self.kind in (BOX_JITTER, GAUSSIAN_JITTER):
            return f"{self.kind}:{self.level:g},{self.cap:g}"
        if self.kind == DETECTIONS:
            return f"{DETECTIONS}={self.path}"
        return ORACLE

    @property
    def jitter(self) -> bool:
        return self.kind in (BOX_JITTER, GAUSSIAN_JITTER)

    def slug(self) -> str:
        """A folder-name form: oracle, box-jitter-0.1-20, detections-<file stem>."""
        if self.kind == DETECTIONS:
            return "detections-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(self.path)).stem)
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(self)).strip("-")

    def describe(self) -> str:
        """One line for headlines and captions."""
        if self.kind == BOX_JITTER:
            return (f"box-jitter (σ = {self.level:g} of the box side per coordinate, capped at {self.cap:g} px; "
                    "the Gaussian moved by the same map)")
        if self.kind == GAUSSIAN_JITTER:
            return (f"gaussian-jitter (level {self.level:g}: the box protocol's σ on the Gaussian's equivalent box, "
                    f"rotation spread {rotation_spread(self.level):g} rad, cap {self.cap:g} px; the box moved by the same map)")
        if self.kind == DETECTIONS:
            return f"detector boxes from {Path(str(self.path)).name} (box IoU ≥ {MATCH_IOU:g}, greedy by score; misses counted)"
        return "oracle (the tight box and the exact Gaussian of the ground-truth mask)"


def parse_protocol(text: str | None) -> ProtocolSpec:
    """`oracle`, `box-jitter[:σ[,cap]]`, `gaussian-jitter[:level[,cap]]`, `detections=FILE`."""
    t = (text or ORACLE).strip()
    if t == ORACLE or t == "":
        return ProtocolSpec()
    if t.startswith(DETECTIONS + "="):
        path = t[len(DETECTIONS) + 1:].strip()
        if not path:
            raise ProtocolError("--prompt detections=FILE: no file given")
        return ProtocolSpec(DETECTIONS, path=path)
    kind, _, args = t.partition(":")
    if kind not in (BOX_JITTER, GAUSSIAN_JITTER):
        raise ProtocolError(f"unknown prompt protocol {text!r}; use oracle, box-jitter[:σ,cap], "
                            "gaussian-jitter[:level,cap] or detections=FILE")
    parts = [p.strip() for p in args.split(",")] if args else []
    if len(parts) > 2:
        raise ProtocolError(f"{text!r}: expected {kind}[:σ[,cap]], at most two numbers")
    try:
        level = float(parts[0]) if parts and parts[0] else DEFAULT_SIGMA
        cap = float(parts[1]) if len(parts) > 1 and parts[1] else DEFAULT_CAP
    except ValueError:
        raise ProtocolError(f"{text!r}: σ and cap must be numbers") from None
    if not (math.isfinite(level) and 0 <= level <= 2):
        raise ProtocolError(f"{text!r}: the noise level must be in [0, 2] (a fraction of the side), got {level}")
    if not (math.isfinite(cap) and cap > 0):
        raise ProtocolError(f"{text!r}: the cap must be a positive number of pixels, got {cap}")
    return ProtocolSpec(kind, level, cap)


# ---------------------------------------------------------------- seeds

def object_seed(seed: int, image_id, object_id) -> int:
    """The 63-bit seed of one object's prompt draw, from (run seed, image id, object id) only."""
    digest = hashlib.sha256(f"prompt/{int(seed)}/{image_id}/{object_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def object_rng(seed: int, image_id, object_id) -> np.random.Generator:
    return np.random.default_rng(object_seed(seed, image_id, object_id))


# ---------------------------------------------------------------- box geometry

def clip_box(box, width: int, height: int) -> np.ndarray:
    """Clip to the image [0, W] × [0, H], keeping every side ≥ MIN_SIDE (a box dragged off the border stays usable)."""
    b = np.asarray(box, dtype=np.float64).copy()
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        a, z = sorted((b[lo], b[hi]))  # a crossed pair (a side jittered below zero) is the same drag
        a, z = min(max(a, 0.0), size), min(max(z, 0.0), size)
        if z - a < MIN_SIDE:
            c = min(max((a + z) / 2, MIN_SIDE / 2), size - MIN_SIDE / 2)
            a, z = c - MIN_SIDE / 2, c + MIN_SIDE / 2
        b[lo], b[hi] = a, z
    return b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between XYXY boxes a (n, 4) and b (m, 4): (n, m)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _side_noise(z4: np.ndarray, sides: np.ndarray, level: float, cap: float) -> np.ndarray:
    """The SAM paper's noise for the coordinates (x0, y0, x1, y1): N(0, level·side), each capped at ±cap px."""
    return np.clip(z4 * level * np.array([sides[0], sides[1], sides[0], sides[1]]), -cap, cap)


def _with_map(prompt: Prompt, box: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> Prompt:
    w, h = prompt.width, prompt.height
    mean = np.array([min(max(mean[0], -0.5), w - 0.5), min(max(mean[1], -0.5), h - 0.5)])  # centre inside the image
    cov = (cov + cov.T) / 2
    return Prompt(rho_from_pixel_moments(mean, cov, w, h), clip_box(box, w, h), w, h, prompt.area, dict(prompt.meta))


def box_jitter(prompt: Prompt, level: float, cap: float, rng: np.random.Generator) -> Prompt:
    """Box coordinates + N(0, level·side) each, capped at ±cap px, sub-pixel, clipped to the image. The Gaussian
    gets the same axis-aligned map (per-axis scale and shift) that takes the oracle box to the jittered one."""
    z = rng.standard_normal(5)  # the 5th draw is gaussian-jitter's rotation: both protocols consume the same stream
    if level == 0:
        return prompt  # bit-identical to the oracle, not merely equal up to rounding
    b = np.asarray(prompt.box_xyxy, dtype=np.float64)
    sides = b[2:] - b[:2]
    nb = b + _side_noise(z[:4], sides, level, cap)
    lo, hi = np.minimum(nb[:2], nb[2:]), np.maximum(nb[:2], nb[2:])
    scale = np.maximum(hi - lo, 1e-12) / np.maximum(sides, 1e-12)
    mean, cov = pixel_moments_from_rho(prompt.rho, prompt.width, prompt.height)
    # pixel-centre mean → pixel-edge frame (+0.5), the box map, back (−0.5)
    new_mean = lo + (mean + 0.5 - b[:2]) * scale - 0.5
    new_cov = cov * np.outer(scale, scale)
    return _with_map(prompt, np.concatenate([lo, hi]), new_mean, new_cov)


def principal_frame(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(λ_major, λ_minor), U (columns: major, minor axis) of a 2×2 covariance, in closed form (deterministic signs)."""
    cxx, cyy, cxy = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    half, r = (cxx + cyy) / 2, math.hypot((cxx - cyy) / 2, cxy)
    t = 0.5 * math.atan2(2 * cxy, cxx - cyy)
    u = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.array([half + r, max(half - r, 0.0)]), u


def equivalent_sides(lam: np.ndarray) -> np.ndarray:
    """Sides of the Gaussian's equivalent box: a run of s pixels has variance (s² − 1)/12, so s = √(12λ + 1).
    For an axis-aligned rectangular mask this is exactly its tight box: level ℓ then moves the Gaussian as
    box-jitter σ = ℓ moves the box."""
    return np.sqrt(12 * np.maximum(lam, 0) + 1)


def rotation_spread(level: float) -> float:
    """Rotation std (rad): 2ℓ moves the end of the equivalent box's major half-axis (s/2) sideways by N(0, ℓ·s),
    the spread box-jitter gives one coordinate."""
    return ROTATION_PER_LEVEL * level


def gaussian_jitter(prompt: Prompt, level: float, cap: float, rng: np.random.Generator) -> Prompt:
    """The Gaussian's equivalent box (principal frame) jittered as box-jitter does (centre shift, per-axis scale),
    plus a rotation N(0, 2ℓ) rad capped where the major axis' end would move more than cap px (and at ±π/2). The
    oracle box goes through the same map; the box models get its axis-aligned bounding box."""
    z = rng.standard_normal(5)
    if level == 0:
        return prompt
    mean, cov = pixel_moments_from_rho(prompt.rho, prompt.width, prompt.height)
    lam, u = principal_frame(cov)
    sides = equivalent_sides(lam)
    n = _side_noise(z[:4], sides, level, cap)  # (u−, v−, u+, v+)
    a0, a1 = -sides / 2 + n[:2], sides / 2 + n[2:]
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    shift, scale = (lo + hi) / 2, np.maximum(hi - lo, 1e-12) / sides
    limit = min(math.pi / 2, 2 * cap / sides[0])
    phi = float(np.clip(z[4] * rotation_spread(level), -limit, limit))
    rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    m = rot @ u @ np.diag(scale) @ u.T  # x' = μ + U·shift + M (x − μ)
    new_mean = mean + u @ shift
    new_cov = m @ cov @ m.T
    b = np.asarray(prompt.box_xyxy, dtype=np.float64)
    corners = np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]) - 0.5  # pixel-centre frame
    moved = (corners - mean) @ m.T + new_mean + 0.5
    return _with_map(prompt, np.concatenate([moved.min(0), moved.max(0)]), new_mean, new_cov)


def prompt_from_detection(box_xyxy, oracle: Prompt) -> Prompt:
    """A detected box as a prompt: the box clipped to the image, the Gaussian by the box→Gaussian rule
    (segcore.prompt.rho_from_box: the moments of the ellipse inscribed in the box)."""
    b = clip_box(box_xyxy, oracle.width, oracle.height)
    return Prompt(rho_from_box(b, oracle.width, oracle.height), b, oracle.width, oracle.height, oracle.area,
                  dict(oracle.meta))


# ---------------------------------------------------------------- detections

@dataclass
class Detections:
    """A COCO results file: per image id (as text), [(score, XYXY box, category or None, index in file)]."""

    path: str
    by_image: dict
    skipped: dict = field(default_factory=dict)  # reason -> count of entries left out
    total: int = 0

    def summary(self) -> dict:
        return {"file": self.path, "entries": self.total, "used": sum(len(v) for v in self.by_image.values()),
                "skipped": dict(self.skipped)}


def load_detections(path, image_ids: Iterable | None = None) -> Detections:
    """Read a COCO results json: a list of {image_id, bbox [x, y, w, h], score, optional category_id}.

    Unreadable file, not a list, or no usable entry: ProtocolError. Entries with a missing field, a non-finite
    or empty box, a bad score, or an image id not in `image_ids`: skipped and counted by reason."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise ProtocolError(f"detections file {p}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise ProtocolError(f"detections file {p}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # a results list wrapped in a COCO-style dict
    if not isinstance(data, list):
        raise ProtocolError(f"detections file {p}: expected a COCO results list [{{image_id, bbox, score}}, ...], "
                            f"got {type(data).__name__}")
    known = None if image_ids is None else {str(i) for i in image_ids}
    out: dict = {}
    skipped: dict = {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    for i, d in enumerate(data):
        if not isinstance(d, dict):
            skip("not an object")
            continue
        missing = [k for k in ("image_id", "bbox", "score") if k not in d]
        if missing:
            skip("missing " + ", ".join(missing))
            continue
        try:
            bbox = np.asarray(d["bbox"], dtype=np.float64)
            score = float(d["score"])
        except (TypeError, ValueError):
            skip("bbox or score not numeric")
            continue
        if bbox.shape != (4,):
            skip("bbox not 4 numbers")
            continue
        if not (np.all(np.isfinite(bbox)) and math.isfinite(score)):
            skip("NaN or inf in bbox or score")
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            skip("bbox with zero or negative size")
            continue
        iid = str(d["image_id"])
        if known is not None and iid not in known:
            skip("image id not in the dataset")
            continue
        cat = d.get("category_id")
        out.setdefault(iid, []).append((score, np.concatenate([bbox[:2], bbox[:2] + bbox[2:]]), cat, i))
    det = Detections(str(p), out, skipped, len(data))
    if not out:
        why = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "the file is empty"
        raise ProtocolError(f"detections file {p}: no usable detection ({len(data)} entries; {why})")
    return det


def match_detections(gt_boxes: Mapping[str, np.ndarray], dets: list, threshold: float = MATCH_IOU) -> dict:
    """Greedy matching by score: each detection, best first, takes the unmatched object its box overlaps most
    (box IoU ≥ threshold). Class-agnostic: a promptable segmenter gets a box, not a class. Returns
    {object id: (detection index in file, score, box, IoU) or None (a miss)}. Ties: lower file index first, then
    the object listed first."""
    ids = list(gt_boxes)
    out: dict = {oid: None for oid in ids}
    if not ids or not dets:
        return out
    order = sorted(range(len(dets)), key=lambda k: (-dets[k][0], dets[k][3]))
    g = np.stack([np.asarray(gt_boxes[o], dtype=np.float64) for o in ids])
    ious = box_iou(np.stack([dets[k][1] for k in order]), g)
    free = np.ones(len(ids), dtype=bool)
    for r, k in enumerate(order):
        row = np.where(free, ious[r], -1.0)
        j = int(np.argmax(row))
        if row[j] >= threshold:
            free[j] = False
            out[ids[j]] = (dets[k][3], dets[k][0], dets[k][1], float(ious[r, j]))
    return out


# ---------------------------------------------------------------- the protocol applied

@dataclass(frozen=True)
class PromptRow:
    """One object's prompt as used (or its miss), with where it came from: one row of a prompt set."""

    dataset: str
    image_id: str
    object_id: str
    protocol: str
    seed: int  # run seed
    object_seed: int  # the draw's seed (jitter protocols), else empty
    prompt: Prompt | None  # None: a miss (no detection matched the object)
    det_index: int | None = None
    det_score: float | None = None
    det_iou: float | None = None

    @property
    def miss(self) -> bool:
        return self.prompt is None


class PromptProtocol:
    """Turns the oracle prompts of an image into the prompts a protocol gives. One object's prompt depends only on
    (run seed, image id, object id) and, for detections, on the image's detections and ground-truth boxes."""

    def __init__(self, spec: ProtocolSpec | str, seed: int = 0, detections: Detections | None = None):
        self.spec = parse_protocol(spec) if isinstance(spec, str) else spec
        self.seed = int(seed)
        self.detections = detections
        if self.spec.kind == DETECTIONS and detections is None:
            raise ProtocolError("the detections protocol needs its detections (load_detections)")

    def __str__(self) -> str:
        return str(self.spec)

    def one(self, dataset: str, prompt: Prompt) -> PromptRow:
        """A jitter or oracle prompt for one object (its meta must carry image_id and object_id)."""
        iid, oid = str(prompt.meta.get("image_id")), str(prompt.meta.get("object_id"))
        if prompt.meta.get("image_id") is None or prompt.meta.get("object_id") is None:
            raise PromptError("a protocol prompt needs the object's image_id and object_id (seeds come from them)")
        if self.spec.kind == DETECTIONS:
            raise ProtocolError("detections are matched per image: use PromptProtocol.image()")
        if self.spec.kind == ORACLE:
            return PromptRow(dataset, iid, oid, str(self.spec), self.seed, None, prompt)
        s = object_seed(self.seed, iid, oid)
        f = box_jitter if self.spec.kind == BOX_JITTER else gaussian_jitter
        return PromptRow(dataset, iid, oid, str(self.spec), self.seed, s,
                         f(prompt, self.spec.level, self.spec.cap, np.random.default_rng(s)))

    def image(self, dataset: str, image_id, prompts: Mapping[str, Prompt], gt_boxes: Mapping[str, np.ndarray] | None = None) -> dict:
        """{object id: PromptRow} for the given oracle prompts of one image. For detections, `gt_boxes` holds the
        boxes of every object of the image (not only those asked for), so that a match never depends on which
        objects a run selected."""
        if self.spec.kind != DETECTIONS:
            return {oid: self.one(dataset, p) for oid, p in prompts.items()}
        boxes = dict(gt_boxes) if gt_boxes is not None else {oid: p.box_xyxy for oid, p in prompts.items()}
        for oid, p in prompts.items():
            boxes.setdefault(oid, p.box_xyxy)
        matched = match_detections(boxes, self.detections.by_image.get(str(image_id), []))
        out = {}
        for oid, p in prompts.items():
            m = matched.get(oid)
            if m is None:
                out[oid] = PromptRow(dataset, str(image_id), str(oid), str(self.spec), self.seed, None, None)
            else:
                out[oid] = PromptRow(dataset, str(image_id), str(oid), str(self.spec), self.seed, None,
                                     prompt_from_detection(m[2], p), det_index=m[0], det_score=m[1], det_iou=m[3])
        return out


# ---------------------------------------------------------------- prompt sets (write, read, replay)

PROMPT_COLUMNS = ("dataset", "image_id", "object_id", "protocol", "seed", "object_seed", "status",
                  "box_x0", "box_y0", "box_x1", "box_y1", "mu_x", "mu_y", "var_x", "var_y", "cov_xy",
                  "width", "height", "area_px", "det_index", "det_score", "det_iou")
PROMPT_SET = "prompts.csv"  # in a run folder; shards write parts under prompts/ first
MISS = "miss"


def _f(v) -> str:
    return "" if v is None else repr(float(v))  # repr: reads back bit-exactly


def row_to_csv(r: PromptRow) -> list[str]:
    p = r.prompt
    if p is None:
        geo = [""] * 9 + ["", "", ""]
    else:
        geo = [_f(x) for x in p.box_xyxy] + [_f(x) for x in p.rho] + [str(p.width), str(p.height), str(p.area)]
    return [r.dataset, r.image_id, r.object_id, r.protocol, str(r.seed), "" if r.object_seed is None else str(r.object_seed),
            MISS if p is None else "ok"] + geo + ["" if r.det_index is None else str(r.det_index), _f(r.det_score), _f(r.det_iou)]


class PromptSetWriter(PartFileWriter):
    """Appends rows as part files (atomic; one per flush) under RUN_DIR/prompts/; merge_prompt_set folds them."""

    def __init__(self, run_dir, tag: str = "0", flush_every: int = 500):
        super().__init__(Path(run_dir) / "prompts", tag, flush_every)
        self.seen: set = set()

    def add(self, rows: Iterable[PromptRow]) -> None:
        for r in rows:
            k = (r.dataset, r.image_id, r.object_id)
            if k not in self.seen:  # several models see the same prompt: one row
                self.seen.add(k)
                self.buffer.append(r)
        self._maybe_flush()

    def write_part(self, path: Path, rows: list) -> None:
        _write_rows(path, [row_to_csv(r) for r in rows])


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PROMPT_COLUMNS)
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def prompt_set_files(path) -> list[Path]:
    """A prompt-set file, or a run folder's prompts.csv and part files."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = [p / PROMPT_SET] if (p / PROMPT_SET).is_file() else []
    return files + (sorted((p / "prompts").glob("part-*.csv")) if (p / "prompts").is_dir() else [])


def _read_raw(path) -> dict:
    rows: dict = {}
    files = prompt_set_files(path)
    if not files:
        raise ProtocolError(f"prompt set {path}: no such file (nor a run folder holding {PROMPT_SET})")
    for f in files:
        try:
            with open(f, newline="") as fh:
                reader = csv.DictReader(fh)
                missing = set(PROMPT_COLUMNS) - set(reader.fieldnames or [])
                if missing:
                    raise ProtocolError(f"prompt set {f}: not a prompt set (missing columns {sorted(missing)})")
                for raw in reader:
                    rows[(raw["dataset"], raw["image_id"], raw["object_id"])] = raw
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ProtocolError(f"prompt set {f}: unreadable ({e})") from None
    return rows


def merge_prompt_set(run_dir) -> int:
    """Fold RUN_DIR/prompts/part-*.csv into RUN_DIR/prompts.csv (sorted), then delete the parts. Returns rows."""
    run_dir = Path(run_dir)
    parts = sorted((run_dir / "prompts").glob("part-*.csv")) if (run_dir / "prompts").is_dir() else []
    if not parts:
        return 0
    rows = _read_raw(run_dir)
    _write_rows(run_dir / PROMPT_SET, [[rows[k][c] for c in PROMPT_COLUMNS] for k in sorted(rows)])
    for p in parts:
        p.unlink()
    return len(rows)


def _parse_row(raw: dict) -> PromptRow:
    num = lambda c: float(raw[c]) if raw[c] != "" else None
    where = f"{raw['dataset']} image {raw['image_id']} object {raw['object_id']}"
    try:
        prompt = None
        if raw["status"] != MISS:
            box = np.array([float(raw[c]) for c in ("box_x0", "box_y0", "box_x1", "box_y1")])
            rho = np.array([float(raw[c]) for c in ("mu_x", "mu_y", "var_x", "var_y", "cov_xy")])
            prompt = Prompt(rho, box, int(raw["width"]), int(raw["height"]), int(raw["area_px"] or 0),
                            {"image_id": raw["image_id"], "object_id": raw["object_id"]})
        return PromptRow(raw["dataset"], raw["image_id"], raw["object_id"], raw["protocol"], int(raw["seed"] or 0),
                         int(raw["object_seed"]) if raw["object_seed"] else None, prompt,
                         int(raw["det_index"]) if raw["det_index"] else None, num("det_score"), num("det_iou"))
    except (KeyError, ValueError) as e:
        raise PromptError(f"prompt set row {where}: {e}") from None


class PromptSet:
    """A saved prompt set for replay: the prompt of (dataset, image id, object id). When the set holds one dataset
    only, it answers for any dataset name (the same files under another name)."""

    def __init__(self, path):
        self.path = str(path)
        self.raw = _read_raw(path)
        if not self.raw:
            raise ProtocolError(f"prompt set {path}: holds no prompt")
        self.datasets = sorted({k[0] for k in self.raw})
        self.protocols = sorted({r["protocol"] for r in self.raw.values()})
        if len(self.protocols) != 1:
            raise ProtocolError(f"prompt set {path}: mixes protocols {self.protocols}; one protocol per set")
        self.protocol = self.protocols[0]

    def __len__(self) -> int:
        return len(self.raw)

    def get(self, dataset: str, image_id, object_id) -> PromptRow | None:
        ds = dataset if dataset in self.datasets or len(self.datasets) != 1 else self.datasets[0]
        raw = self.raw.get((ds, str(image_id), str(object_id)))
        if raw is None:
            return None
        return replace(_parse_row(raw), dataset=dataset)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for f in prompt_set_files(self.path):
            h.update(f.read_bytes())
        return h.hexdigest()
