"""The run loop with fake Segmenters: records, resume, shards, and bad input that must never stop a run."""
import json

import numpy as np
import pytest

from segcore import registry
from benchmark.cli import main as cli_main
from segcore.datasets import open_dataset
from segcore.records import read_frame, read_rows
from benchmark.report import make_report
from benchmark.runner import ConfigError, RunConfig, Runner
from tests.fixtures import make_coco_dataset
from segcore.segmenter import PhaseTimer


class FakeSegmenter:
    """Predicts the prompt's box; can raise on chosen objects, report NaN timings or return a wrong shape."""

    num_parameters = 1234

    def __init__(self, name, weights_id="fake-v1", raise_on=(), nan_timings=False, wrong_shape_on=()):
        self.name, self.weights_id = name, weights_id
        self.raise_on, self.nan, self.wrong = set(raise_on), nan_timings, set(wrong_shape_on)
        self.timings, self.timer, self.calls = {}, PhaseTimer(), 0

    def set_image(self, image):
        self.timer.reset()
        with self.timer("encoder"):
            self.shape = image.shape[:2]
        self.timings = dict(self.timer.times)

    def predict(self, prompts):
        self.calls += 1
        out = []
        with self.timer("decoder"):
            for p in prompts:
                if p.meta.get("object_id") in self.raise_on:
                    raise RuntimeError(f"boom on {p.meta['object_id']}")
                m = np.zeros((3, 3) if p.meta.get("object_id") in self.wrong else self.shape, bool)
                x0, y0, x1, y1 = p.box_xyxy.astype(int)
                m[y0:y1, x0:x1] = True
                out.append(m)
        self.timings = dict(self.timer.times)
        if self.nan:
            self.timings["decoder"] = float("nan")
        self.last_tokens = [7] * len(prompts)
        return out


@pytest.fixture
def fakes():
    made = {}

    def reg(name, **kw):
        registry.register(registry.ModelEntry(name, "", lambda entry, **_: made.setdefault(name, FakeSegmenter(name, **kw))))

    reg("fake-good")
    reg("fake-raise", raise_on={"2"})
    reg("fake-nan", nan_timings=True)
    reg("fake-random", weights_id="random")
    reg("fake-shape", wrong_shape_on={"3"})
    yield made
    for n in ("fake-good", "fake-raise", "fake-nan", "fake-random", "fake-shape"):
        registry.unregister(n)


def _cfg(tmp_path, data, models_, run="run", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("warmup", 1)
    return RunConfig(models=models_, datasets=[str(data)], run_dir=str(tmp_path / "results" / run), **kw)


def _box_iou(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = np.zeros_like(mask)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    return (mask & box).sum() / (mask | box).sum()


def test_records_match_independent_iou_and_timing_columns(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=3, objects_per_image=2)
    c = Runner(_cfg(tmp_path, data, ["fake-good"])).run()
    assert c.ok == 9 and c.failed == 0
    df = read_frame(tmp_path / "results" / "run")
    ds = open_dataset(str(data))
    for e in ds.index():
        masks = ds.load_masks(e, [o.object_id for o in e.objects])
        for oid, m in masks.items():
            row = df[(df.image_id == e.image_id) & (df.object_id == oid)].iloc[0]
            assert row.iou == pytest.approx(_box_iou(m), abs=1e-12)
            assert row.area_px == m.sum() and row.width == m.shape[1] and row.height == m.shape[0]
    assert (df.tokens == 7).all() and (df.num_parameters == 1234).all()
    # encoder counted fully per object, decoder shared by the objects of the image's one call
    assert np.allclose(df.time_object, df.t_encoder + df.t_decoder)
    assert (df.time_object >= df.time_amortised - 1e-12).all()
    assert fakes["fake-good"].calls == 3 + 1  # one predict per image, plus one warm-up call


def test_bad_input_never_stops_the_run(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=4, objects_per_image=2)
    (data / "images" / "0001.png").write_bytes(b"\x89PNG broken")  # image 2 is corrupt
    ann = json.loads((data / "annotations.json").read_text())
    ann["annotations"][0]["segmentation"]["size"] = [7, 7]  # object 1: mask of the wrong size
    (data / "annotations.json").write_text(json.dumps(ann))
    for name in ("fake-raise", "fake-nan", "fake-shape"):
        c = Runner(_cfg(tmp_path, data, [name], run=name)).run()
        rows = {r["object_id"]: r for r in read_rows(tmp_path / "results" / name)}
        assert len(rows) == 12 and c.ok + c.failed == 12
        assert rows["1"]["status"] == "failed" and "size" in rows["1"]["reason"]
        for oid in ("4", "5", "6"):  # the objects of the corrupt image
            assert rows[oid]["status"] == "failed" and "cannot read image" in rows[oid]["reason"]
        if name == "fake-raise":
            assert rows["2"]["status"] == "failed" and "boom on 2" in rows["2"]["reason"] and np.isnan(rows["2"]["iou"])
            assert rows["3"]["status"] == "ok" and rows["3"]["iou"] > 0  # same image, retried alone
            assert c.failed == 5
        if name == "fake-shape":
            assert rows["3"]["status"] == "failed" and "prediction shape" in rows["3"]["reason"]
        if name == "fake-nan":
            assert c.failed == 4 and all(np.isnan(r["t_decoder"]) for r in rows.values() if r["status"] == "ok")
    make_report(tmp_path / "results" / "fake-nan", latest=False)  # NaN timings do not break the report


def test_random_weights_give_times_but_no_iou(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=2)
    Runner(_cfg(tmp_path, data, ["fake-random", "fake-good"])).run()
    df = read_frame(tmp_path / "results" / "run")
    rnd = df[df.model == "fake-random"]
    assert rnd.iou.isna().all() and rnd.boundary_iou.isna().all() and rnd.time_object.notna().all()
    assert rnd.reason.str.contains("random").all()
    make_report(tmp_path / "results" / "run", latest=False)
    t1 = (tmp_path / "results" / "run" / "table1.md").read_text()
    line = next(l for l in t1.splitlines() if l.startswith("| fake-random"))
    assert "n/a (random weights)" in line and "0.00M" not in line and "1234" in line
    assert "±" not in line


def test_resume_skips_finished_objects(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=4, objects_per_image=2)
    cfg = _cfg(tmp_path, data, ["fake-good"], flush_every=3)
    first = Runner(cfg).run()
    assert first.ok == 12
    again = Runner(cfg).run()
    assert again.ok == 0 and again.already_done == 12
    # simulate a crash that lost the last part files: only their objects run again
    parts = sorted((tmp_path / "results" / "run" / "records").glob("part-*.csv"))
    lost = sum(1 for _ in open(parts[-1])) - 1
    parts[-1].unlink()
    third = Runner(cfg).run()
    assert third.ok == lost and third.already_done == 12 - lost
    assert len(read_rows(tmp_path / "results" / "run")) == 12


def test_retry_failed_reruns_only_failures(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=2)
    Runner(_cfg(tmp_path, data, ["fake-raise"])).run()
    c = Runner(_cfg(tmp_path, data, ["fake-raise"], retry_failed=True)).run()
    assert c.failed == 1 and c.ok == 0 and c.already_done == 5


def test_shards_merge_to_the_full_run(tmp_path, fakes):
    from segcore.records import merge

    data = make_coco_dataset(tmp_path / "ds", n_images=5, objects_per_image=2)
    for k in range(3):
        Runner(_cfg(tmp_path, data, ["fake-good"], run="sharded", shard=(k, 3), limit=11, seed=4)).run()
    Runner(_cfg(tmp_path, data, ["fake-good"], run="whole", limit=11, seed=4)).run()
    assert merge(tmp_path / "results" / "sharded") == 11
    assert not list((tmp_path / "results" / "sharded" / "records").glob("part-*.csv"))
    key = lambda r: (r["image_id"], r["object_id"], r["iou"])
    assert sorted(map(key, read_rows(tmp_path / "results" / "sharded"))) == sorted(map(key, read_rows(tmp_path / "results" / "whole")))


def test_config_errors_stop_before_any_work(tmp_path, fakes, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        Runner(_cfg(tmp_path, tmp_path / "no-such-data", ["fake-good"]))
    with pytest.raises(ConfigError, match="unknown model .no-such-model"):
        Runner(_cfg(tmp_path, make_coco_dataset(tmp_path / "ds", n_images=1), ["no-such-model"]))
    rc = cli_main(["--model", "fake-good", "--data", str(tmp_path / "missing"), "--results", str(tmp_path / "r"), "--no-progress"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = cli_main(["--model", "noop", "--data", str(tmp_path / "ds"), "--results", str(tmp_path / "r"), "--threads", "0"])
    assert rc == 2 and "--threads" in capsys.readouterr().err
    rc = cli_main(["--model", "noop", "--data", str(tmp_path / "ds"), "--results", str(tmp_path / "r"), "--shard", "3/2"])
    assert rc == 2 and "shard" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_config_file_and_area_filter(tmp_path, fakes):
    data = make_coco_dataset(tmp_path / "ds", n_images=3, objects_per_image=3)
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f'model = "fake-good,noop"\ndata = ["{data}"]\nmax-area = 0.05\nwarmup = 0\nseed = 3\n')
    rc = cli_main(["--config", str(cfg), "--results", str(tmp_path / "r"), "--run", "x", "--no-progress", "--no-latest"])
    assert rc == 0
    meta = json.loads((tmp_path / "r" / "x" / "run.json").read_text())
    assert meta["settings"]["max_area_ratio"] == 0.05 and meta["settings"]["seed"] == 3
    assert "max-area = 0.05" in meta["invocations"][-1]["config_file_text"] and meta["machine"]["cpu_model"]
    df = read_frame(tmp_path / "r" / "x")
    assert len(df) and (df.area_ratio <= 0.05).all() and set(df.model) == {"fake-good", "noop"}
    assert (tmp_path / "r" / "x" / "report.html").is_file()


def test_changed_dataset_never_reuses_old_records(tmp_path, fakes, capsys):
    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=2)
    args = ["--model", "fake-good", "--data", str(data), "--results", str(tmp_path / "r"), "--no-progress", "--no-latest", "--no-report"]
    assert cli_main(args) == 0
    first = {p.name for p in (tmp_path / "r").iterdir()}
    img = sorted((data / "images").iterdir())[0]
    img.write_bytes(img.read_bytes() + b"\0")  # a re-rendered image: same name, other content
    assert cli_main(args) == 0  # default run name follows the dataset version: a new folder, computed afresh
    second = {p.name for p in (tmp_path / "r").iterdir()} - first
    assert len(second) == 1 and len(read_rows(tmp_path / "r" / second.pop())) == len(read_rows(tmp_path / "r" / first.pop()))
    # an explicit --run holding records of the old version stops before any work
    assert cli_main(args + ["--run", "pinned"]) == 0
    img.write_bytes(img.read_bytes() + b"\0")
    n_before = len(read_rows(tmp_path / "r" / "pinned"))
    assert cli_main(args + ["--run", "pinned"]) == 2
    assert "different version of dataset" in capsys.readouterr().err
    assert len(read_rows(tmp_path / "r" / "pinned")) == n_before


@pytest.mark.slow
def test_submitit_shards_then_merge_and_report(tmp_path):
    """The --executor path (submitit, here its local processes instead of Slurm): n shard jobs, one merged run."""
    data = make_coco_dataset(tmp_path / "ds", n_images=4, objects_per_image=2)
    rc = cli_main(["--model", "oracle-box", "--data", str(data), "--results", str(tmp_path / "r"), "--run", "s",
                   "--executor", "submitit-local", "--shards", "2", "--no-latest", "--warmup", "0"])
    assert rc == 0
    rows = read_rows(tmp_path / "r" / "s")
    assert len(rows) == 12 and {r["shard"] for r in rows} == {"0/2", "1/2"}
    assert not list((tmp_path / "r" / "s" / "records").glob("part-*.csv"))  # merged
    assert (tmp_path / "r" / "s" / "table1.md").is_file()
