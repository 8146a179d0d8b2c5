"""make paper end to end on small files in the authors' HDF5 layout under the published names, two models."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

pytest.importorskip("h5py")

from benchmark import paper  # noqa: E402
from segcore.hdf5 import write_flip_hdf5  # noqa: E402


def _images(seed: int, n: int = 2, size=(96, 128)):
    """n images with two objects each: one large ellipse, one small square (< 1 % of the image, for Table 3)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    images, masks = [], []
    for i in range(n):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        big = ((yy - 40 - 4 * i) / 22.0) ** 2 + ((xx - 60) / 30.0) ** 2 <= 1
        small = np.zeros((h, w), bool)
        small[70:78, 100:108] = True  # 64 px of 12288: 0.5 %
        img[big] = (200, 80, 40)
        img[small] = (40, 200, 90)
        images.append(img)
        masks.append([big, small])
    return images, masks


@pytest.fixture
def paper_data(tmp_path):
    d = tmp_path / "paper-data"
    d.mkdir()
    write_flip_hdf5(d / "coco_val2017.hdf5", *_images(0), dataset_name="coco", split="val2017")  # the README's name
    write_flip_hdf5(d / "objascale-eval-v1.hdf5", *_images(1), dataset_name="objascale", split="eval")
    mini = tmp_path / "mini.hdf5"
    write_flip_hdf5(mini, *_images(2, n=1), dataset_name="objascale-mini", split="eval")
    return d, mini


def _read_csv(path):
    return list(csv.reader(io.StringIO(path.read_text())))


def test_numbers_file_is_consistent():
    numbers = paper.load_numbers()
    assert numbers["paper"]["arxiv"] == "2502.02763"
    tiny = numbers["models"]["flip-tiny"]
    # the published Average is the mean of the published per-dataset values (a transcription check)
    assert np.mean(list(tiny["table1_datasets"].values())) == pytest.approx(tiny["table1"]["average"], abs=0.005)
    assert [d["name"] for d in numbers["datasets"]] == ["Hypersim", "KITTI-360", "OpenImages", "COCO", "LVIS", "ObjaScale"]
    assert all(d["url"].startswith("https://") for d in numbers["datasets"])


def test_find_datasets_by_published_name(paper_data, tmp_path):
    data, mini = paper_data
    (data / "notes.txt").write_text("not a dataset")
    write_flip_hdf5(data / "objascale-mini-eval-v1.hdf5", *_images(5, n=1))  # the suite's mini set, not ObjaScale
    sets = {d.key: d for d in paper.find_datasets(data, paper.load_numbers(), str(mini))}
    assert sets["coco"].path.name == "coco_val2017.hdf5"
    assert sets["objascale"].path.name == "objascale-eval-v1.hdf5"
    assert sets["mini"].path == mini and not sets["mini"].in_paper
    assert sets["lvis"].path is None and "nc.mlcloud.uni-tuebingen.de" in sets["lvis"].why_missing
    # the published name wins over a look-alike; two look-alikes for one set are an error, not a guess
    write_flip_hdf5(data / "coco-val-v2.hdf5", *_images(3, n=1))
    assert {d.key: d for d in paper.find_datasets(data, paper.load_numbers(), None)}["coco"].path.name == "coco_val2017.hdf5"
    write_flip_hdf5(data / "lvis-val-v1.hdf5", *_images(3, n=1))
    write_flip_hdf5(data / "lvis-val-v2.hdf5", *_images(4, n=1))
    with pytest.raises(paper.PaperError, match="several files"):
        paper.find_datasets(data, paper.load_numbers(), str(mini))


def test_make_paper_end_to_end(paper_data, tmp_path, capsys):
    data, mini = paper_data
    results = tmp_path / "results"
    argv = ["--paper-data", str(data), "--mini", str(mini), "--models", "oracle-box,flip-tiny.project",
            "--results", str(results), "--warmup", "0", "--no-progress", "--no-boundary"]
    assert paper.main(argv) == 0
    run = results / "paper"
    for name in ("paper_table1", "paper_table1_summary", "paper_table3"):
        for ext in ("md", "csv", "tex"):
            assert (run / f"{name}.{ext}").is_file()
    t1 = _read_csv(run / "paper_table1.csv")
    header, rows = t1[0], t1[1:]
    assert "Paper IoU (%)" in header and "Measured IoU (%)" in header and "Δ 95 % CI" in header
    col = {h: j for j, h in enumerate(header)}
    # every cell is filled: a number or a reason (never blank, never a bare dash)
    for r in rows + _read_csv(run / "paper_table3.csv")[1:] + _read_csv(run / "paper_table1_summary.csv")[1:]:
        for c in r:
            assert c.strip() and c.strip() != "–" or c == r[1], r  # Weights is '–' for a model that did not run
    by = {(r[col["Model"]], r[col["Dataset"]]): r for r in rows}
    tiny_coco = by[("flip-tiny", "COCO")]
    assert tiny_coco[col["Paper IoU (%)"]] == "77.76"
    measured = float(tiny_coco[col["Measured IoU (%)"]].split(" ± ")[0])
    assert 0 <= measured <= 100 and tiny_coco[col["Objects"]] == "4"
    assert float(tiny_coco[col["Δ measured − paper (points)"]]) == pytest.approx(measured - 77.76, abs=0.011)
    lo, hi = (float(x) for x in tiny_coco[col["Δ 95 % CI"]].strip("[]").split(","))
    assert lo <= float(tiny_coco[col["Δ measured − paper (points)"]]) <= hi
    # missing dataset: its reason names where to download it
    assert "dataset not present" in by[("flip-tiny", "LVIS")][col["Measured IoU (%)"]]
    assert "nc.mlcloud" in by[("flip-tiny", "LVIS")][col["Measured IoU (%)"]]
    # the Average needs all six sets
    assert "needs all six" in by[("flip-tiny", "Average (6 sets)")][col["Measured IoU (%)"]]
    assert by[("flip-tiny", "Average (6 sets)")][col["Paper IoU (%)"]] == "78.24"
    # a model of the paper that did not run says why (weights or not in MODELS)
    assert "not run: not in MODELS" in by[("sam-h", "Average (6 sets)")][col["Measured IoU (%)"]] or \
        "weights not present" in by[("sam-h", "Average (6 sets)")][col["Measured IoU (%)"]] or \
        "not registered" in by[("sam-h", "Average (6 sets)")][col["Measured IoU (%)"]]
    # the oracle is measured but not in the paper; the mini set is not a paper set
    assert by[("oracle-box", "COCO")][col["Paper IoU (%)"]].startswith("n/a: not in the paper")
    assert by[("oracle-box", "ObjaScale-mini")][col["Paper IoU (%)"]].startswith("n/a: not a paper dataset")
    # Table 3: objects < 1 % only (one per image), paper values not transcribed and saying so
    t3 = _read_csv(run / "paper_table3.csv")
    r3 = {(r[0], r[2]): r for r in t3[1:]}
    assert r3[("flip-tiny", "COCO")][5] == "2"
    assert r3[("flip-tiny", "COCO")][3].startswith("not transcribed")
    # Fig. 7 heat maps: one per model on each ObjaScale set
    pngs = sorted(p.name for p in (run / "fig7").glob("*.png"))
    assert len(pngs) == 4 and all(p.startswith("heatmap_") for p in pngs), pngs
    assert "fig7/" in (run / "paper.md").read_text()
    # resumable: a second invocation runs nothing new and gives the same tables
    before = (run / "paper_table1.csv").read_text()
    capsys.readouterr()
    assert paper.main(argv) == 0
    assert "0 ok" in capsys.readouterr().out
    assert (run / "paper_table1.csv").read_text() == before


def test_tables_only_without_records_say_why(tmp_path):
    rc = paper.main(["--tables-only", "--no-mini", "--models", "oracle-box", "--results", str(tmp_path)])
    assert rc == 0
    rows = _read_csv(tmp_path / "paper" / "paper_table1.csv")[1:]
    assert rows and all(r[4] for r in rows)
    assert all("not present" in r[4] or "no records" in r[4] or "not in MODELS" in r[4] or "weights" in r[4]
               or "not registered" in r[4] for r in rows)


def test_local_shards_then_tables_only(paper_data, tmp_path, capsys):
    """--shard k/n writes into the one run folder; --tables-only then merges and tabulates every shard."""
    data, mini = paper_data
    base = ["--paper-data", str(data), "--mini", str(mini), "--models", "oracle-box", "--results", str(tmp_path / "r"),
            "--warmup", "0", "--no-progress", "--no-boundary"]
    for k in (0, 1):
        assert paper.main(base + ["--shard", f"{k}/2"]) == 0
        assert "--tables-only" in capsys.readouterr().out
    assert not (tmp_path / "r" / "paper" / "paper_table1.csv").exists()
    assert paper.main(base + ["--tables-only"]) == 0
    rows = {(r[0], r[2]): r for r in _read_csv(tmp_path / "r" / "paper" / "paper_table1.csv")[1:]}
    assert rows[("oracle-box", "COCO")][5] == "4" and rows[("oracle-box", "ObjaScale-mini")][5] == "2"


@pytest.mark.slow
def test_submitit_executor_shards_the_paper_run(paper_data, tmp_path):
    """--executor (submitit's local processes standing in for Slurm): two shard jobs into the one paper run."""
    pytest.importorskip("submitit")
    from segcore.records import read_rows

    data, mini = paper_data
    assert paper.main(["--paper-data", str(data), "--mini", str(mini), "--models", "oracle-box", "--results",
                       str(tmp_path / "r"), "--warmup", "0", "--executor", "submitit-local", "--shards", "2"]) == 0
    rows = read_rows(tmp_path / "r" / "paper")
    assert len(rows) == 10 and {r["shard"] for r in rows} == {"0/2", "1/2"}
    t1 = {(r[0], r[2]): r for r in _read_csv(tmp_path / "r" / "paper" / "paper_table1.csv")[1:]}
    assert t1[("oracle-box", "ObjaScale")][5] == "4"


def test_make_paper_with_jittered_prompts_runs_apart(paper_data, tmp_path):
    """--prompt: its own run folder (never averaged with the oracle run), every table says which prompts it used."""
    data, mini = paper_data
    results = tmp_path / "results"
    argv = ["--paper-data", str(data), "--mini", str(mini), "--models", "oracle-box", "--results", str(results),
            "--warmup", "0", "--no-progress", "--no-boundary", "--prompt", "box-jitter:0.2"]
    assert paper.main(argv) == 0
    run = results / "paper_box-jitter-0.2-20"
    assert not (results / "paper").exists() and (run / "prompts.csv").is_file()
    assert "(measured with prompts: box-jitter:0.2,20)" in (run / "paper_table1.md").read_text()
    assert "Prompts of the measured runs: box-jitter (σ = 0.2" in (run / "paper.md").read_text()
    assert paper.main(argv[:-1] + ["nonsense"]) == 2
