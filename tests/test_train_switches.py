"""Ablation switches, fine-tuning and CLI/config handling of the trainer (no training steps: fast)."""
from pathlib import Path

import pytest
import torch

from flip.training.cli import parse_args
from flip.training.loop import build_model


def _build(*extra):
    return build_model(parse_args(["--data", "x", *extra]), torch.device("cpu"))[0]


@pytest.mark.parametrize("name,sizes", [("maxpatch4x4", (1, 2, 4)), ("maxpatch64x64", (1, 2, 4, 8, 16, 32, 64)),
                                        ("minpatch4x4", (4, 8, 16))])
def test_patch_set_ablations(name, sizes):
    m = _build("--patch-set", name)
    assert m.cfg.patch_sizes == sizes
    assert len(m.sparsify.patch_embeddings) == len(sizes)


def test_initial_pos_emb_only_first_layer():
    full, first = _build(), _build("--initial-pos-emb")
    assert [layer.attention.with_position for layer in full.layers] == [True, True, True]
    assert [layer.attention.with_position for layer in first.layers] == [True, False, False]
    assert sum(p.numel() for p in first.parameters()) < sum(p.numel() for p in full.parameters())


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('lr = 0.001\nno_dynamic_sampling = true\nbatch_images = 3\ndata = ["a", "b"]\n')
    a = parse_args(["--config", str(cfg), "--batch-images", "5"])
    assert a.lr == 0.001 and a.no_dynamic_sampling and a.batch_images == 5 and a.data == ["a", "b"]
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(bad)])


@pytest.mark.reference("onnx")
def test_fine_tune_from_authors_weights(authors_cache):
    from tests import reference

    args = parse_args(["--data", "x", "--init-weights", str(reference.onnx_path())])
    model, source = build_model(args, torch.device("cpu"))
    assert source.startswith("authors:")
    alphas = [float(layer.alpha.detach()) for layer in model.layers]
    assert alphas != pytest.approx([0.1, 0.1, 0.1])  # trained values (docs/flip.md §4.4: 0.95/1.61/3.61), not the init
    with pytest.raises(Exception, match="not a file"):
        build_model(parse_args(["--data", "x", "--init-weights", "no-such-weights"]), torch.device("cpu"))
    model, source = build_model(parse_args(["--data", "x", "--init-weights", "flip-tiny.authors"]), torch.device("cpu"))
    assert source.startswith("authors:")


def test_bad_flags_are_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--data", "x", "--steps", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--data", "x", "--min-tokens", "600", "--mean-tokens", "512"])


def test_untagged_name_takes_the_committed_project_checkpoint_when_no_authors_file(monkeypatch, tmp_path):
    import flip
    from flip import entries

    path = entries.CHECKPOINT_DIR / "flip-tiny-objascale.pt"
    if not path.is_file():
        pytest.skip("no committed flip/checkpoints/flip-tiny-objascale.pt")
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path / "empty-cache"))  # a fresh clone: nothing in the cache
    model = flip.pretrained("flip-tiny")
    assert model.weights_id.startswith("project:flip-tiny-objascale.pt")
    assert (model.gaussian_convention, model.sampler_compat) == ("pixel", "exact")
    meta = torch.load(path, weights_only=True)["meta"]  # the project's own files need no pickle code either
    assert meta["step"] > 0 and meta["train_args"]["model"] == "flip-tiny"
