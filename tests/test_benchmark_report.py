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

GOLDEN_TABLE1 = """**Table 1: mean IoU on all objects (prompts: oracle)**

| Model | objascale IoU (%) | coco IoU (%) | Average | Params | Time mean (ms) | Time median (ms) | Amortised (ms) |
|:---|---:|---:|---:|---:|---:|---:|---:|
| flip-tiny | 75.00 ± 25.00 | 80.00 ± 16.33 | 77.50 ± 20.66 | 0.51M | 14.00 | 10.00 | 10.00 |
| sam-b | n/a (random weights) | n/a (random weights) | n/a (random weights) | 93.74M | 100.00 | 100.00 | 66.67 |
"""

GOLDEN_TABLE3 = """| Model | objascale IoU (%) | coco IoU (%) | Average | Params | Time mean (ms) | Time median (ms) | Amortised (ms) |
|:---|---:|---:|---:|---:|---:|---:|---:|
| flip-tiny | 50.00 ± 0.00 | 60.00 ± 0.00 | 55.00 ± 0.00 | 0.51M | 10.00 | 10.00 | 7.50 |
| sam-b | n/a (random weights) | n/a (random weights) | n/a (random weights) | 93.74M | 100.00 | 100.00 | 75.00 |
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
    assert "75.00 $\\pm$ 25.00" in tex and "\\begin{tabular}{lrrrrrrr}" in tex
    with open(run / "table1.csv") as f:
        assert list(csv.reader(f))[1][1] == "75.00 ± 25.00"  # the results first (a phone shows them)
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
        assert table[m]["Time mean (ms)"] == f"{1000 * sum(t) / len(t):.2f}"
        st, k = sorted(t), len(t) // 2
        assert table[m]["Time median (ms)"] == f"{1000 * (st[k] if len(st) % 2 else (st[k - 1] + st[k]) / 2):.2f}"


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
    for stem in ("heatmap_resolution_flip-tiny", "heatmap_area_flip-tiny", "tradeoff_params", "tradeoff_time"):
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


# ---- the report a reader gets: headline, labels, figures, phone layout, run details (issue 11, item 18) ----

AUTHORS = "authors:flip-tiny-fused.onnx@sha256:ef53c2774528aa0b1c"
PROJECT = "project:flip-tiny-objascale.pt@sha256:e8c9426703fd99e1f0"


def _write_pair_run(run_dir: Path, n=40, invocations=True):
    """Two weight files of one architecture, a hierarchical variant and the oracle box on the same objects;
    IoUs drawn from a seeded generator so that authors > project on most objects."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(n):
        area = int(rng.integers(20, 20000))
        w, h = (640, 480) if i % 2 else (320, 240)
        base = float(rng.uniform(0.3, 0.7))
        noise = float(rng.normal(0.0, 0.03))
        for m, wid, params, iou, t in (("flip-tiny", AUTHORS, 513804, base + 0.2, 0.05), ("flip-tiny", PROJECT, 513804, base + (0.25 if i % 5 == 0 else 0.05), 0.06),
                                       ("flip-tiny-h", AUTHORS, 513804, base + 0.15 + noise, 0.02), ("oracle-box", "oracle", 0, base, 1e-5)):
            rows.append(make_row(model=m, weights_id=wid, num_parameters=params, dataset="mini", image_id=str(i), object_id=str(i),
                                 status="ok", iou=min(iou, 1.0), area_px=area, area_ratio=area / (w * h), width=w, height=h,
                                 time_object=t * (1 + (i % 3)), time_amortised=t * (1 + (i % 3)), timestamp=0.0))
    run_dir.mkdir(parents=True)
    write_csv(run_dir / "records.csv", rows)
    inv = lambda argv, models: {"started": "2026-01-01T10:00:00+0100", "argv": argv, "settings": {"models": list(models), "seed": 0},
                                "models": models, "machine": {"cpu_model": "test", "load_average_1_5_15min": [0.5, 0.4, 0.3]}}
    first = inv(["benchmark", "--model", "flip-tiny,flip-tiny-h,oracle-box"],
                {"flip-tiny": {"weights_id": AUTHORS, "num_parameters": 513804, "mode": "5sigma"},
                 "flip-tiny-h": {"weights_id": AUTHORS, "num_parameters": 513804, "mode": "hierarchical"},
                 "oracle-box": {"weights_id": "oracle", "num_parameters": 0}})
    second = inv(["benchmark", "--model", "flip-tiny", "--weights", "project"],
                 {"flip-tiny": {"weights_id": PROJECT, "num_parameters": 513804, "mode": "5sigma", "description": "FLIP-Tiny trained here"}})
    meta = {"settings": second["settings"], "machine": second["machine"], "models": second["models"], "created": "c", "updated": "u"}
    if invocations:
        meta["invocations"] = [first, second]
    (run_dir / "run.json").write_text(json.dumps(meta))
    return rows


def _cells(html_text: str, table_id: str, col: int = 0) -> list[str]:
    """Body cells of one column of the HTML table that follows the heading with this id."""
    part = html_text.split(f"id='{table_id}'", 1)[1].split("</table>", 1)[0]
    body = part.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r)[col] for r in re.findall(r"<tr>(.*?)</tr>", body)]


def test_model_labels_are_short_and_unique_without_hashes(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    labels = _cells(html, "table1")
    assert labels == ["flip-tiny.authors", "flip-tiny.project", "flip-tiny-h", "oracle-box"]
    for name in ("table1", "table3", "sizes", "status", "ci"):
        assert not any("sha256" in c or "@" in c for c in _cells(html, name)), name
    with open(run / "table1.csv") as f:
        assert [r["Model"] for r in csv.DictReader(f)] == labels
    # the full weights ids are still in the report, once per variant in the run details
    assert AUTHORS in html and PROJECT in html
    from benchmark.tables import short_labels

    same_source = short_labels([("m", "project:a.pt@sha256:1111aaaa"), ("m", "project:b.pt@sha256:2222bbbb")])
    assert sorted(same_source.values()) == ["m.project:a", "m.project:b"]
    same_file = short_labels([("m", "project:a.pt@sha256:1111aaaa99"), ("m", "project:a.pt@sha256:2222bbbb99")])
    assert sorted(same_file.values()) == ["m.project:a@1111aaaa", "m.project:a@2222bbbb"]


def test_headline_names_best_model_margin_ci_and_share_better(tmp_path):
    run = tmp_path / "r"
    rows = _write_pair_run(run)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    head = re.search(r"<p class='headline'>(.*?)</p>", html).group(1)
    # independent recomputation: authors vs the runner-up (flip-tiny-h) on the same objects
    a = {r["object_id"]: r["iou"] for r in rows if r["model"] == "flip-tiny" and r["weights_id"] == AUTHORS}
    b = {r["object_id"]: r["iou"] for r in rows if r["model"] == "flip-tiny-h"}
    d = [a[k] - b[k] for k in a]
    assert head.startswith("Prompts: oracle (the tight box and the exact Gaussian of the ground-truth mask). ")
    head = head.split(". ", 1)[1]
    assert head.startswith(f"flip-tiny.authors has the highest mean IoU, {100 * sum(a.values()) / len(a):.2f} % over {len(a)} objects")
    assert f"{100 * sum(d) / len(d):+.2f} points over flip-tiny-h" in head
    assert f"better on {100 * sum(x > 0 for x in d) / len(d):.0f} %" in head
    lo, hi = map(float, re.search(r"95 % CI \[([-+0-9.]+), ([-+0-9.]+)\]", head).groups())
    assert lo - 0.01 <= 100 * sum(d) / len(d) <= hi + 0.01 and lo < hi
    # a named baseline
    make_report(run, latest=False, baseline="oracle-box")
    head = re.search(r"<p class='headline'>(.*?)</p>", (run / "report.html").read_text()).group(1)
    assert "points over oracle-box (named with --baseline" in head
    with pytest.raises(ValueError, match="baseline 'nope'"):
        make_report(run, latest=False, baseline="nope")


def test_headline_grid_bolds_the_best_per_column_and_flags_small_samples(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run, n=12)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    grid = html.split("class='data grid'", 1)[1].split("</table>", 1)[0]
    header = re.findall(r"<th scope[^>]*>(.*?)</th>", grid)
    assert header == ["Model", "All", "&lt; 1% of image", "Small &lt; 32²", "Medium &lt; 96²", "Large ≥ 96²"]
    rows = re.findall(r"<tr><td class='txt'>(.*?)</td>(.*?)</tr>", grid)
    assert [r[0] for r in rows] == ["flip-tiny.authors", "flip-tiny.project", "flip-tiny-h", "oracle-box"]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r[1]) for r in rows]
    for j in range(len(header) - 1):
        vals = [float(re.sub(r"<.*?>", "", c).split()[0]) if not c.startswith("–") else None for c in (row[j] for row in cells)]
        if all(v is None for v in vals):
            continue
        best = max(v for v in vals if v is not None)
        for row, v in zip(cells, vals):
            assert ("<strong>" in row[j]) == (v is not None and round(v, 2) == round(best, 2))
            n = int(re.search(r"n=(\d+)", row[j]).group(1))
            assert ("†" in row[j]) == (0 < n < 10)
    assert "fewer than 10 objects" in html


def test_page_has_viewport_meta_scroll_boxes_sticky_model_column_and_figure_grid(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    n_tables = html.count("<table")
    assert n_tables >= 7 and html.count("<div class='scroll'><table") == n_tables
    assert re.search(r"table\.data tr>:first-child\{position:sticky;left:0", html)
    assert ".figs{display:grid" in html and "<div class='figs'><figure>" in html
    # numbers never wrap, text columns are left-aligned, numeric ones right-aligned
    assert re.search(r"table\.data th,table\.data td\{[^}]*white-space:nowrap", html)
    status = html.split("id='status'", 1)[1].split("</table>", 1)[0]
    assert "<th scope='col' class='txt'>Main failure causes</th>" in status and "<th scope='col' class='num'>OK</th>" in status
    # footnotes once
    from html import escape

    from benchmark.tables import TIME_NOTE

    assert html.count(escape(TIME_NOTE)) == 1 and (run / "report.md").read_text().count(TIME_NOTE) == 1


def test_no_column_repeats_another(tmp_path):
    """One dataset: no Average (= the dataset column), no Dataset column; amortised = per-object time: dropped;
    the status table no longer repeats the weights id."""
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    with open(run / "table1.csv") as f:
        header = next(csv.reader(f))
    assert header == ["Model", "mini IoU (%)", "Params", "Time mean (ms)", "Time median (ms)"]
    with open(run / "status.csv") as f:
        assert next(csv.reader(f)) == ["Model", "OK", "Failed", "Main failure causes"]
    with open(run / "sizes.csv") as f:
        assert next(csv.reader(f))[:2] == ["Model", "Small < 32² px"]


def test_heatmap_counts_are_readable_on_every_cell():
    """Counts are ≥ 8 pt and contrast ≥ 4.5:1 with their cell (no white on yellow)."""
    from benchmark.plots import _plt, contrast_ratio, heatmap_figure

    rel = np.array([1e-3, 1e-3, 0.2, 0.2, 0.02])
    res = np.array([300, 300, 300, 300, 600])
    iou = np.array([1.0, 1.0, 0.0, 0.0, 0.55])  # yellow, dark purple, green
    mean, count = heatmap_bins(rel, res, iou, REL_AREA_EDGES, RESOLUTION_EDGES)
    fig, ax, im = heatmap_figure(mean, count, REL_AREA_EDGES, RESOLUTION_EDGES, "x", "y", "t")
    texts = [t for t in ax.texts if t.get_text().isdigit()]
    assert len(texts) == 3
    for t in texts:
        x, y = t.get_position()
        bg = im.cmap(im.norm(100 * mean[int(y), int(x)]))
        assert contrast_ratio(bg, __import__("matplotlib").colors.to_rgba(t.get_color())) >= 4.5, (t.get_text(), t.get_color())
        assert t.get_fontsize() >= 8
    _plt().close(fig)


def test_heatmap_axes_are_fitted_to_the_occupied_bins():
    from benchmark.plots import _plt, heatmap_figure, occupied_range

    rel = np.array([2e-3, 5e-2])
    res = np.array([300.0, 500.0])
    mean, count = heatmap_bins(rel, res, np.array([0.5, 0.7]), REL_AREA_EDGES, RESOLUTION_EDGES)
    (r0, r1), (c0, c1) = occupied_range(count)
    assert (c1 - c0, r1 - r0) == (4, 2)  # 2e-3..5e-2: half-decade bins 6..9 of 12; 300..500 px: half-octaves 4..5 of 14
    fig, ax, _ = heatmap_figure(mean, count, REL_AREA_EDGES, RESOLUTION_EDGES, "x", "y", "t")
    assert ax.get_xlim() == (c0, c1) and ax.get_ylim() == (r0, r1)
    _plt().close(fig)


def test_figures_difference_maps_tradeoffs_with_legend_and_zero_parameter_models(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    plots_dir = run / "plots"
    diffs = sorted(p.name for p in plots_dir.glob("diff_*.png"))
    assert diffs == ["diff_flip-tiny.authors_minus_flip-tiny-h.png", "diff_flip-tiny.authors_minus_flip-tiny.project.png",
                     "diff_flip-tiny.authors_minus_oracle-box.png"]
    svg = (plots_dir / "tradeoff_params.svg").read_text()
    assert 'id="legend_1"' in svg
    for label in ("flip-tiny.authors", "flip-tiny.project", "flip-tiny-h", "oracle-box (0)"):
        assert f"<!-- {label} -->" in svg  # matplotlib writes each text as a comment before its glyphs
    assert svg.count("<!-- 0 -->") >= 1  # the 0-parameter position is labelled, not dropped off the log axis
    # error bars: a vertical CI line per model (LineCollection), plus horizontal IQR bars on the time plot
    assert svg.count('id="LineCollection_') >= 4
    png = plots_dir / "tradeoff_time.png"
    from benchmark.report import png_size

    w, h = png_size(png)
    assert w >= 1000  # 2× resolution
    html = (run / "report.html").read_text()
    assert f"width='{w // 2}' height='{h // 2}'" in html


def test_run_details_list_every_variant_of_every_invocation(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    details = html.split("id='details'", 1)[1]
    for label, cmd in (("flip-tiny.authors", "benchmark --model flip-tiny,flip-tiny-h,oracle-box"),
                       ("flip-tiny.project", "benchmark --model flip-tiny --weights project"),
                       ("flip-tiny-h", "benchmark --model flip-tiny,flip-tiny-h,oracle-box")):
        block = details.split(f"<strong>{label}</strong>", 1)[1].split("</div>", 1)[0]
        assert f"<code>{cmd}</code>" in block, label
    assert "FLIP-Tiny trained here" in details  # the registry's description when run.json carries it
    assert "hierarchical refinement" in details and "ground-truth box" in details  # otherwise one line of our own
    assert "mode hierarchical" in details
    for key in ("code version of this report", "time zone", "machine load during the run", "machine load when the report was made"):
        assert key in details
    assert "[0.5, 0.4, 0.3]" in details
    assert details.count("<details>") >= 5 and "<summary>run.json in full</summary>" in details
    assert "2. 2026-01-01T10:00:00+0100: flip-tiny" in details


def test_single_invocation_run_json_still_reads(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run, invocations=False)
    make_report(run, latest=False)
    details = (run / "report.html").read_text().split("id='details'", 1)[1]
    block = details.split("<strong>flip-tiny.project</strong>", 1)[1].split("</div>", 1)[0]
    assert "<code>benchmark --model flip-tiny --weights project</code>" not in block  # argv not in the old settings
    assert "not recorded (this run.json keeps only its last invocation" in details.split("<strong>flip-tiny-h</strong>", 1)[1]
    assert "only the last one is kept" in details


def _browser_ready():
    import shutil as _sh

    try:
        import websocket  # noqa: F401
    except ImportError:
        return False
    return _sh.which("chromium") is not None


@pytest.mark.skipif(not _browser_ready(), reason="needs Debian's chromium and the PyPI package websocket-client")
def test_check_report_passes_at_desktop_and_phone_width_and_catches_a_page_without_viewport(tmp_path):
    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    script = ROOT / "scripts" / "check_report.py"
    out = subprocess.run([sys.executable, str(script), str(run / "report.html"), "--out", str(tmp_path / "shots")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1280 px: ok" in out.stdout and "390 px: ok" in out.stdout
    for w in (1280, 390):
        assert (tmp_path / "shots" / f"report-{w}px.png").is_file() and (tmp_path / "shots" / f"report-{w}px-full.png").is_file()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><table><tr><td style='white-space:nowrap'>"
                   + "wide " * 300 + "</td></tr></table><div style='width:120px;overflow:hidden;white-space:nowrap'>"
                   + "clipped text " * 20 + "</div></body></html>")
    out = subprocess.run([sys.executable, str(script), str(bad), "--out", str(tmp_path / "shots2")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "390 px: FAIL" in out.stdout and "no <meta name=viewport>" in out.stdout
    assert "1280 px: FAIL" in out.stdout and "page scrolls horizontally" in out.stdout and "clipped text" in out.stdout


def test_r2_item20_results_first_scroll_hint_and_means_in_the_map_cells(tmp_path):
    """Issue 23 item 20 (the page check itself is scripts/check_report.py, run in the next test)."""
    from benchmark.plots import heatmap_figure

    run = tmp_path / "r"
    _write_pair_run(run)
    make_report(run, latest=False)
    html = (run / "report.html").read_text()
    t1 = html[html.index("id='table1'"):]
    head = t1[: t1.index("</tr>")]
    ths = re.findall(r"<th[^>]*>([^<]*)</th>", head)
    assert ths[1].endswith("IoU (%)") and "data-main>" + ths[1] in head  # the result right after the model
    assert html.count("class='more'") >= 7 and "scrollWidth" in html  # every table can say it continues
    counters = html[html.index("id='counters'"):]
    assert re.findall(r"<th[^>]*>([^<]*)</th>", counters[: counters.index("</tr>")])[:2] == ["Counter", "Shard 0/1"] \
        or "no summary files" in counters
    mean = np.array([[0.5, np.nan], [0.9, 0.25]])
    count = np.array([[3, 0], [1, 7]])
    fig, ax, _ = heatmap_figure(mean, count, np.array([1e-4, 1e-3, 1e-2]), np.array([100, 200, 400]), "x", "y", "t")
    texts = {t.get_text() for t in ax.texts}
    assert {"50", "90", "25", "n=3", "n=1", "n=7"} <= texts


@pytest.mark.skipif(not _browser_ready(), reason="needs Debian's chromium and the PyPI package websocket-client")
def test_r2_item20_check_report_fails_when_the_main_column_is_off_screen(tmp_path):
    script = ROOT / "scripts" / "check_report.py"
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
            "initial-scale=1'></head><body><h3>Table 1</h3><div class='scroll' style='overflow-x:auto'><table class='data'>"
            "<thead><tr><th>Model</th>" + "".join(f"<th>Time column {k}</th>" for k in range(6))
            + "<th data-main>mini IoU (%)</th></tr></thead><tbody><tr><td>m</td>" + "<td>1.00</td>" * 6
            + "<td>81.94</td></tr></tbody></table></div></body></html>")
    bad = tmp_path / "bad.html"
    bad.write_text(page)
    out = subprocess.run([sys.executable, str(script), str(bad), "--out", str(tmp_path / "s"), "--widths", "390"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "main column 'mini IoU (%)' outside the first view" in out.stdout, out.stdout
    assert "table scrolls without saying so" in out.stdout
