"""Reports from records alone: golden tables, fixed heat-map bins, aggregates recomputed by an independent path."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.plots import ABS_AREA_EDGES, REL_AREA_EDGES, RESOLUTION_EDGES, heatmap_bins
from segcore.records import make_row, write_csv
from benchmark.report import make_report
from benchmark.stats import bootstrap_mean_ci

ROOT = Path(__file__).resolve().parents[1]

# (model, weights, params, dataset, object, iou, area_px, w, h, time_object, time_amortised)
FIXED = [
    ("flip-tiny", "authors", 513788, "objascale", "1", 0.5, 99, 100, 100, 0.010, 0.005),
    ("flip-tiny", "authors", 513788, "objascale", "2", 1.0, 5000, 100, 100, 0.030, 0.015),
    ("flip-tiny", "authors", 513788, "coco", "3", 0.6, 50, 200, 100, 0.010, 0.010),
    ("flip-tiny", "authors", 513788, "coco", "4", 0.8, 2000, 200, 100, 0.010, 0.010),
    ("flip-tiny", "authors", 513788, "coco", "5", 1.0, 10000, 200, 100, 0.010, 0.010),
    ("sam-b", "random", 93735472, "objascale", "1", None, 99, 100, 100, 0.100, 0.050),
    ("sam-b", "random", 93735472, "objascale", "2", None, 5000, 100, 100, 0.100, 0.050),
    ("sam-b", "random", 93735472, "coco", "3", None, 50, 200, 100, 0.100, 0.100),
]

GOLDEN_TABLE1 = """**Table 1: mean IoU on all objects**

| Model | Params | Time (ms) | Amortised (ms) | objascale IoU (%) | coco IoU (%) | Average |
|---|---|---|---|---|---|---|
| flip-tiny | 0.51M | 14.00 | 10.00 | 75.00 ± 25.00 | 80.00 ± 16.33 | 77.50 ± 20.66 |
| sam-b | 93.74M | 100.00 | 66.67 | n/a (random weights) | n/a (random weights) | n/a (random weights) |
"""

GOLDEN_TABLE3 = """| Model | Params | Time (ms) | Amortised (ms) | objascale IoU (%) | coco IoU (%) | Average |
|---|---|---|---|---|---|---|
| flip-tiny | 0.51M | 10.00 | 7.50 | 50.00 ± 0.00 | 60.00 ± 0.00 | 55.00 ± 0.00 |
| sam-b | 93.74M | 100.00 | 75.00 | n/a (random weights) | n/a (random weights) | n/a (random weights) |
"""


def _write_fixed(run_dir: Path, extra_failed=True):
    rows = []
    for m, w, p, d, o, iou, a, width, height, t, ta in FIXED:
        rows.append(make_row(model=m, weights_id=w, num_parameters=p, dataset=d, image_id="img" + o, object_id=o, status="ok",
                             reason="" if iou is not None else "IoU n/a: random weights", iou=iou,
                             boundary_iou=None if iou is None else iou / 2, area_px=a, area_ratio=a / (width * height),
                             width=width, height=height, time_object=t, time_amortised=ta, timestamp=0.0))
    if extra_failed:  # a failed object never enters a mean
        rows.append(make_row(model="flip-tiny", weights_id="authors", num_parameters=513788, dataset="coco", image_id="img9",
                             object_id="9", status="failed", reason="image: cannot read image", width=200, height=100, timestamp=0.0))
    run_dir.mkdir(parents=True)
    write_csv(run_dir / "records.csv", rows)
    (run_dir / "run.json").write_text(json.dumps({"settings": {"models": ["flip-tiny", "sam-b"], "seed": 0}, "machine": {"cpu_model": "test"}}))


def test_golden_tables_from_fixed_records(tmp_path):
    run = tmp_path / "results" / "golden"
    _write_fixed(run)
    make_report(run)
    t1 = (run / "table1.md").read_text()
    assert t1.startswith(GOLDEN_TABLE1)
    assert GOLDEN_TABLE3 in (run / "table3.md").read_text()
    sizes = (run / "sizes.md").read_text()
    assert "| flip-tiny | coco | 60.00 ± 0.00 (n=1) | 80.00 ± 0.00 (n=1) | 100.00 ± 0.00 (n=1) |" in sizes
    assert "| coco | 3 | 1 | image ×1 |" in (run / "status.md").read_text()
    tex = (run / "table1.tex").read_text()
    assert "75.00 $\\pm$ 25.00" in tex and "\\begin{tabular}{lrrrrrr}" in tex
    with open(run / "table1.csv") as f:
        assert list(csv.reader(f))[1][4] == "75.00 ± 25.00"
    assert (tmp_path / "results" / "latest").resolve() == run.resolve()


def test_aggregates_match_an_independent_recomputation(tmp_path):
    """Recompute Table 1's numbers from records.csv with the csv module and plain Python, not the report's path."""
    run = tmp_path / "run"
    rng = np.random.default_rng(5)
    rows = []
    for m in ("a", "b"):
        for d in ("d1", "d2", "d3"):
            for i in range(int(rng.integers(3, 40))):
                area = int(rng.integers(1, 5000))
                rows.append(make_row(model=m, weights_id="w", num_parameters=10, dataset=d, image_id=str(i), object_id=str(i),
                                     status="ok", iou=float(rng.random()), area_px=area, area_ratio=area / 10000,
                                     width=100, height=100, time_object=float(rng.random()), time_amortised=0.1, timestamp=0.0))
    run.mkdir()
    write_csv(run / "records.csv", rows)
    make_report(run, latest=False)
    with open(run / "records.csv") as f:
        recs = list(csv.DictReader(f))
    with open(run / "table1.csv") as f:
        table = {r["Model"]: r for r in csv.DictReader(f)}
    for m in ("a", "b"):
        means, stds = [], []
        for d in ("d1", "d2", "d3"):
            v = [float(r["iou"]) for r in recs if r["model"] == m and r["dataset"] == d]
            mu = sum(v) / len(v)
            sd = (sum((x - mu) ** 2 for x in v) / len(v)) ** 0.5
            means.append(mu)
            stds.append(sd)
            assert table[m][f"{d} IoU (%)"] == f"{100 * mu:.2f} ± {100 * sd:.2f}"
        assert table[m]["Average"] == f"{100 * sum(means) / 3:.2f} ± {100 * sum(stds) / 3:.2f}"
        t = [float(r["time_object"]) for r in recs if r["model"] == m]
        assert table[m]["Time (ms)"] == f"{1000 * sum(t) / len(t):.2f}"


def test_heatmap_bins_are_fixed():
    rel = np.array([1e-6, 2e-6, 0.5, 0.5, 0.02, 5.0])  # 5.0 is clipped into the last bin
    res = np.array([64, 64, 1000, 1000, 100, 100])
    v = np.array([0.2, 0.4, 1.0, 0.0, 0.7, 0.9])
    mean, count = heatmap_bins(rel, res, v, REL_AREA_EDGES, RESOLUTION_EDGES)
    assert mean.shape == (14, 12) and count.sum() == 6
    assert count[0, 0] == 2 and mean[0, 0] == pytest.approx(0.3)
    assert count[7, 11] == 2 and mean[7, 11] == pytest.approx(0.5)  # log2(1000)=9.97 → row 7; 0.5 → last column
    assert count[1, 8] == 1 and mean[1, 8] == pytest.approx(0.7)  # log2(100)=6.64 → row 1; log10(0.02)=-1.7 → col 8
    assert count[1, 11] == 1 and mean[1, 11] == pytest.approx(0.9)
    assert np.isnan(mean[5, 5]) and len(ABS_AREA_EDGES) == 17


def test_html_is_self_contained_and_report_reruns_from_records(tmp_path):
    run = tmp_path / "results" / "r"
    _write_fixed(run)
    out = subprocess.run([sys.executable, "-m", "benchmark.report", str(run), "--no-latest"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and not re.search(r"src=['\"](?!data:)", html)
    assert "Table 1" in html and "cpu_model" in html
    for stem in ("heatmap_resolution_flip-tiny_authors", "heatmap_area_flip-tiny_authors", "tradeoff_params", "tradeoff_time"):
        assert (run / "plots" / f"{stem}.png").is_file() and (run / "plots" / f"{stem}.svg").is_file()
    assert not list((run / "plots").glob("heatmap_*sam-b*"))  # random weights: no IoU maps
    first = (run / "table1.md").read_text()
    make_report(run, latest=False)
    assert (run / "table1.md").read_text() == first
    bad = subprocess.run([sys.executable, "-m", "benchmark.report", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_bootstrap_interval_contains_the_mean_and_shrinks():
    rng = np.random.default_rng(0)
    x = rng.random(400)
    lo, hi = bootstrap_mean_ci(x, np.random.default_rng(1))
    lo2, hi2 = bootstrap_mean_ci(x[:40], np.random.default_rng(1))
    assert lo < x.mean() < hi and (hi - lo) < (hi2 - lo2)
    assert bootstrap_mean_ci(x, np.random.default_rng(1)) == (lo, hi)


def test_paired_differences_on_shared_objects(tmp_path):
    run = tmp_path / "run"
    rows = []
    for i in range(30):
        for m, iou in (("a", 0.8), ("b", 0.6)):
            rows.append(make_row(model=m, weights_id="w", num_parameters=1, dataset="d", image_id=str(i), object_id="0", status="ok",
                                 iou=iou + (0.01 * i if m == "a" else 0), area_px=10, area_ratio=0.001, width=100, height=100, timestamp=0.0))
    rows.append(make_row(model="a", weights_id="w", num_parameters=1, dataset="d", image_id="99", object_id="0", status="ok",
                         iou=0.0, area_px=10, area_ratio=0.001, width=100, height=100, timestamp=0.0))  # only a has it
    run.mkdir()
    write_csv(run / "records.csv", rows)
    make_report(run, latest=False)
    with open(run / "paired.csv") as f:
        (r,) = list(csv.DictReader(f))
    assert r["Objects"] == "30" and r["Mean A − B"] == f"{100 * (0.2 + 0.01 * 14.5):+.2f}" and r["A better"] == "100.0 %"
    lo, hi = map(float, r["95 % CI"].strip("[]").split(","))
    assert lo < 34.5 < hi
