"""What a benchmark run shows in the terminal: which weights each name meant and why (before the work), then the
headline and the model × object-subset IoU table with the median time per object, then the report's path."""
import json
import re

import numpy as np

from benchmark.cli import main as cli_main
from segcore.records import read_rows


def test_a_run_prints_resolutions_headline_table_and_report_path(tmp_path, coco_dataset, capsys):
    rc = cli_main(["--model", "oracle-box,noop,flip-tiny", "--weights", "random", "--data", str(coco_dataset),
                   "--results", str(tmp_path / "r"), "--run", "t", "--no-progress", "--no-latest", "--warmup", "0",
                   "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    # 1. one line per model, before the records line
    res = [i for i, l in enumerate(lines) if " → " in l]
    assert [lines[i] for i in res] == [
        "oracle-box --weights random → oracle-box (no weights needed; --weights does not apply)",
        "noop --weights random → noop (no weights needed; --weights does not apply)",
        "flip-tiny --weights random → flip-tiny.project (seeded random init: timing only, IoU n/a)"]
    records_at = next(i for i, l in enumerate(lines) if l.startswith("records in"))
    assert max(res) < records_at
    meta = json.loads((tmp_path / "r" / "t" / "run.json").read_text())
    assert meta["models"]["flip-tiny.project"]["resolution"]["line"] == lines[res[2]]

    # 2. the headline, then the table: numbers recomputed here from the records
    rows = read_rows(tmp_path / "r" / "t")
    oracle = [r for r in rows if r["model"] == "oracle-box" and r["status"] == "ok"]
    mean = 100 * np.mean([r["iou"] for r in oracle])
    head = next(i for i, l in enumerate(lines) if "oracle-box has the highest mean IoU" in l)
    assert lines[head].startswith("Prompts: oracle (the tight box and the exact Gaussian of the ground-truth mask). oracle-box")
    assert f"{mean:.2f} % over {len(oracle)} objects" in lines[head]
    header = next(i for i, l in enumerate(lines) if l.startswith("Model "))
    assert head < header
    assert re.split(r"\s{2,}", lines[header].strip()) == ["Model", "All", "< 1% of image", "Small < 32²", "Medium < 96²",
                                                          "Large ≥ 96²", "Median ms/object"]
    body = {re.split(r"\s{2,}", l.strip())[0]: re.split(r"\s{2,}", l.strip()) for l in lines[header + 2:header + 5]}
    assert set(body) == {"oracle-box", "noop", "flip-tiny.project"}
    assert body["oracle-box"][1] == f"{mean:.2f} (n={len(oracle)})"
    assert body["noop"][1:6] == ["n/a (no model)"] * 5 and body["flip-tiny.project"][1:6] == ["n/a (random weights)"] * 5
    flip_ms = np.median([r["time_object"] for r in rows if r["model"] == "flip-tiny.project"]) * 1e3
    assert body["flip-tiny.project"][6] == f"{flip_ms:.2f}"
    # 3. the report's path last
    assert lines[-1] == f"report: {tmp_path / 'r' / 't' / 'report.html'}"
    assert (tmp_path / "r" / "t" / "summary.txt").read_text().splitlines()[0] == lines[head]
