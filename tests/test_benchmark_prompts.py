"""Prompt protocols through the harness: recorded protocol, replay, detections with misses, bad files, the sweep."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from benchmark.cli import main as cli_main
from segcore.prompt_protocols import PROMPT_SET
from segcore.records import read_rows
from tests.fixtures import make_coco_dataset

VOLATILE = {"timestamp", "shard", "t_data", "t_preprocess", "t_encoder", "t_decoder", "t_postprocess", "time_object",
            "time_amortised", "seed"}


@pytest.fixture
def data(tmp_path):
    return make_coco_dataset(tmp_path / "ds", n_images=3, objects_per_image=4, seed=2, sizes=((60, 80), (70, 90)))


def _run(tmp_path, data, run, *extra, model="oracle-box"):
    return cli_main(["--model", model, "--data", str(data), "--results", str(tmp_path / "r"), "--run", run,
                     "--no-latest", "--no-progress", "--warmup", "0", *extra])


def _stable(rows):
    return sorted((tuple((k, v) for k, v in sorted(r.items()) if k not in VOLATILE and not (isinstance(v, float) and np.isnan(v)))
                   for r in rows))


def _prompt_rows(path):
    with open(path, newline="") as f:
        return {(r["image_id"], r["object_id"]): r for r in csv.DictReader(f)}


def test_protocol_is_recorded_and_replay_reproduces_records(tmp_path, data):
    assert _run(tmp_path, data, "jit", "--prompt", "box-jitter:0.2,20", "--seed", "4") == 0
    a = read_rows(tmp_path / "r" / "jit")
    assert {r["prompt"] for r in a} == {"box-jitter:0.2,20"}
    meta = json.loads((tmp_path / "r" / "jit" / "run.json").read_text())
    assert meta["prompts"]["protocol"] == "box-jitter:0.2,20" and "σ = 0.2" in meta["prompts"]["description"]
    assert "box-jitter" in (tmp_path / "r" / "jit" / "report.md").read_text().split("\n")[4]  # the headline names it
    saved = tmp_path / "r" / "jit" / PROMPT_SET
    assert len(_prompt_rows(saved)) == len(a)
    oracle = {(r["image_id"], r["object_id"]): r for r in read_rows(_run(tmp_path, data, "or") or tmp_path / "r" / "or")}
    moved = [r for r in a if (r["box_x0"], r["box_x1"]) != (oracle[(r["image_id"], r["object_id"])]["box_x0"],
                                                           oracle[(r["image_id"], r["object_id"])]["box_x1"])]
    assert len(moved) == len(a)  # every box jittered, sub-pixel
    # replay with another run seed: prompts come from the file, so the records are the same
    assert _run(tmp_path, data, "replay", "--prompts", str(saved), "--seed", "9") == 0
    b = read_rows(tmp_path / "r" / "replay")
    assert _stable(a) == _stable(b)
    assert _prompt_rows(tmp_path / "r" / "replay" / PROMPT_SET) == _prompt_rows(saved)  # the replay wrote the same set
    assert json.loads((tmp_path / "r" / "replay" / "run.json").read_text())["prompts"]["replayed_from"] == str(saved)


def test_an_object_gets_the_same_prompt_in_any_selection(tmp_path, data):
    assert _run(tmp_path, data, "all", "--prompt", "gaussian-jitter:0.1") == 0
    assert _run(tmp_path, data, "some", "--prompt", "gaussian-jitter:0.1", "--limit", "3") == 0
    full, part = _prompt_rows(tmp_path / "r" / "all" / PROMPT_SET), _prompt_rows(tmp_path / "r" / "some" / PROMPT_SET)
    assert len(part) == 3 and all(full[k] == part[k] for k in part)


def test_detections_with_misses_and_bad_entries(tmp_path, data):
    ann = json.loads((data / "annotations.json").read_text())
    dets, skipped_expected = [], 0
    for k, a in enumerate(ann["annotations"]):
        x, y, w, h = a["bbox"]
        if k % 3 == 0:
            continue  # no detection: a miss
        dets.append({"image_id": a["image_id"], "bbox": [x + 0.05 * w, y - 0.05 * h, w, h], "score": 0.5 + k / 100, "category_id": 1})
    dets += [{"image_id": 1, "bbox": [float("nan"), 0, 3, 3], "score": 0.9}, {"image_id": 12345, "bbox": [0, 0, 3, 3], "score": 0.9},
             {"image_id": 1, "bbox": [0, 0, 3, 3]}]
    f = tmp_path / "dets.json"
    f.write_text(json.dumps(dets))
    assert _run(tmp_path, data, "det", "--prompt", f"detections={f}", model="oracle-box,noop") == 0
    rows = read_rows(tmp_path / "r" / "det")
    box_rows = [r for r in rows if r["model"] == "oracle-box"]
    missed = [r for r in box_rows if r["status"] == "miss"]
    n_ann = len(ann["annotations"])
    assert len(box_rows) == n_ann and len(missed) == len(range(0, n_ann, 3))
    assert all(np.isnan(r["iou"]) and r["area_px"] > 0 for r in missed)
    summary = json.loads((tmp_path / "r" / "det" / "summary-0of1.json").read_text())
    assert summary["missed"] == 2 * len(missed) and summary["counters_add_up"]
    meta = json.loads((tmp_path / "r" / "det" / "run.json").read_text())
    assert meta["prompts"]["detections"]["skipped"] == {"NaN or inf in bbox or score": 1, "image id not in the dataset": 1,
                                                        "missing score": 1}
    misses = (tmp_path / "r" / "det" / "misses.md").read_text()
    ok = [r["iou"] for r in box_rows if r["status"] == "ok"]
    with_misses = sum(ok) / (len(ok) + len(missed))
    assert f"{100 * with_misses:.2f}" in misses and f"{100 * np.mean(ok):.2f}" in misses
    head = (tmp_path / "r" / "det" / "report.md").read_text().split("\n")[4]
    assert head.startswith("**Prompts: detector boxes from dets.json") and f"with misses scored 0 its mean IoU is {100 * with_misses:.2f} %" in head
    saved = _prompt_rows(tmp_path / "r" / "det" / PROMPT_SET)
    assert sum(r["status"] == "miss" for r in saved.values()) == len(missed)


def test_bad_prompt_options_are_configuration_errors(tmp_path, data, capsys):
    assert _run(tmp_path, data, "x", "--prompt", "box-jiter") == 2
    assert "unknown prompt protocol" in capsys.readouterr().err
    f = tmp_path / "dets.json"
    f.write_text(json.dumps([{"image_id": 1, "bbox": [float("nan"), 0, 1, 1], "score": 1}]))
    assert _run(tmp_path, data, "x", "--prompt", f"detections={f}") == 2
    assert "no usable detection" in capsys.readouterr().err
    assert _run(tmp_path, data, "x", "--prompts", str(tmp_path / "none.csv")) == 2
    assert "prompt set" in capsys.readouterr().err
    assert not (tmp_path / "r" / "x" / "run.json").exists()
    # one protocol per run folder: never mixed into one set of records
    assert _run(tmp_path, data, "mix") == 0
    assert _run(tmp_path, data, "mix", "--prompt", "box-jitter") == 2
    assert "never mixed" in capsys.readouterr().err


def test_robustness_sweep_tables_and_plot(tmp_path, data):
    from benchmark.robustness import main as sweep

    rc = sweep(["--model", "oracle-box", "--data", str(data), "--results", str(tmp_path / "r"), "--name", "sw",
                "--levels", "0,0.1", "--", "--no-progress", "--warmup", "0"])
    assert rc == 0
    out = tmp_path / "r" / "sw"
    res = json.loads((out / "robustness.json").read_text())
    assert sorted(res["runs"].values()) == ["box-jitter:0.1,20", "gaussian-jitter:0.1,20", "oracle"]
    assert {(p["protocol"], p["level"], p["subset"]) for p in res["paired"]} >= {("box-jitter", 0.1, "all"), ("gaussian-jitter", 0.1, "all")}
    p = next(p for p in res["paired"] if p["protocol"] == "box-jitter" and p["subset"] == "all")
    a = {(r["image_id"], r["object_id"]): r["iou"] for r in read_rows(out / "box-jitter-0.1-20")}
    o = {(r["image_id"], r["object_id"]): r["iou"] for r in read_rows(out / "oracle")}
    assert p["mean"] == pytest.approx(np.mean([a[k] - o[k] for k in a]), abs=1e-12) and p["ci"][0] <= p["mean"] <= p["ci"][1]
    assert (out / "robustness.png").stat().st_size > 10_000 and (out / "robustness_box-jitter.csv").read_text().startswith("Model,Objects,n,0 (oracle),0.1")


def test_report_refuses_records_of_several_protocols(tmp_path, data):
    from benchmark.report import make_report

    assert _run(tmp_path, data, "jit", "--prompt", "box-jitter") == 0
    run = tmp_path / "r" / "jit"
    with open(run / "records.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["prompt"] = "oracle"  # one object's record from an oracle run slipped in
    (run / "records").mkdir(exist_ok=True)
    with open(run / "records" / "part-x.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(rows[0])
    with pytest.raises(ValueError, match="never averaged together"):
        make_report(run, latest=False)


def test_flip_replay_gives_identical_records(tmp_path, data):
    """FLIP reads the Gaussian: the saved floats must come back bit-exactly (same run seed: FLIP's patch sampling
    derives from it)."""
    args = ["--prompt", "gaussian-jitter:0.1", "--seed", "2", "--limit", "5", "--threads", "1"]
    assert _run(tmp_path, data, "f", *args, model="flip-tiny.project") == 0
    saved = tmp_path / "r" / "f" / PROMPT_SET
    assert _run(tmp_path, data, "f2", "--prompts", str(saved), "--seed", "2", "--threads", "1", model="flip-tiny.project") == 0
    a, b = read_rows(tmp_path / "r" / "f"), read_rows(tmp_path / "r" / "f2")
    assert len(a) == 5 and all(r["status"] == "ok" for r in a)
    assert _stable(a) == _stable(b)  # IoU, predicted area, tokens, box: all equal
