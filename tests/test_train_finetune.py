"""`python -m flip.training.finetune` end to end on a tiny COCO set: benchmark before, train from a parent weights
file, export, benchmark after; the exported file records its parent's sha256 and the training data's fingerprint and
loads through the registry."""
import json

import pytest
import torch

pytest.importorskip("flip.sampler", reason="flip.sampler (fovea sampler binding) not built")


def test_finetune_records_provenance_and_loads(tmp_path, monkeypatch):
    from flip.training.checkpoint import export_weights
    from flip.training.finetune import main
    from flip.training.loop import model_config_dict
    from flip.segmenter import create_segmenter
    from flip.variants import create_model
    from segcore.datasets import dataset_fingerprint
    from segcore.hub import sha256
    from tests.test_train_loop import _write_coco

    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path / "cache"))
    train_data = _write_coco(tmp_path / "train", n_images=4, seed=1)
    eval_data = _write_coco(tmp_path / "eval", n_images=2, seed=2)
    torch.manual_seed(0)
    parent_model = create_model("flip-tiny")
    parent = tmp_path / "parent.pt"
    export_weights(parent_model.state_dict(), parent, name="flip-tiny", model_config=model_config_dict(parent_model),
                   meta={"convention": "per-axis", "sampler_compat": "authors", "step": 0})
    out = tmp_path / "ft"
    spec = str(train_data / "annotations.json")
    rc = main(["--model", "flip-tiny", "--weights", str(parent), "--data", spec,
               "--eval", f"tiny={eval_data / 'annotations.json'}", "--out", str(out), "--bench-args", "--threads 1 --warmup 0 --no-boundary",
               "--", "--steps", "8", "--batch-images", "2", "--masks-per-image", "2", "--max-tokens", "256",
               "--mean-tokens", "96", "--no-progress"])
    assert rc == 0
    w = out / "flip-tiny-finetuned.pt"
    meta = torch.load(w, map_location="cpu", weights_only=True)["meta"]
    assert meta["parent"]["files"] == [{"name": "parent.pt", "sha256": sha256(parent)}]
    assert meta["data_fingerprint"] == {spec: {"kind": "content", "fingerprint": dataset_fingerprint(spec)}}
    # the parent's rule is the run's rule, and the file carries it (8 steps: RAdam updates from step 6)
    assert (meta["sampler_compat"], meta["convention"], meta["step"]) == ("authors", "per-axis", 8)
    seg = create_segmenter("flip-tiny", weights=str(w))
    assert seg.weights_id.startswith("project:") and seg.weights_id.endswith(sha256(w)[:12])
    start = {k: v.half().float() for k, v in parent_model.state_dict().items()}  # the parent file is fp16 too
    assert any(not torch.equal(v, start[k]) for k, v in seg.model.state_dict().items())  # trained, not a copy
    assert seg.model.sampler_compat == "authors"
    res = json.loads((out / "before_after.json").read_text())
    rows = {(r["dataset"], r["objects"]): r for r in res["rows"]}
    assert rows[("tiny", "all")]["n"] == 6 and set(res["wall_s"]) == {"benchmark before", "training", "benchmark after"}
    assert (out / "before_after.md").read_text().count("| tiny |") == 2
