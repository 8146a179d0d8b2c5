"""Model registry dispatch, and the real ObjaScale export read through both adapters (skipped when absent)."""
from pathlib import Path

import numpy as np
import pytest

from benchmark import models

ROOT = Path(__file__).resolve().parents[1]


def test_names_resolve_to_tagged_registry_entries():
    import flip  # noqa: F401  (registers its models)

    assert models.resolve_name("noop") == "noop"
    assert models.resolve_name("flip-tiny.project") == "flip-tiny.project"
    assert models.resolve_name("flip-tiny.project", mode="hierarchical") == "flip-tiny-h.project"
    assert models.resolve_name("flip-small-maxpatch4") == "flip-small-maxpatch4.random"
    assert models.resolve_name("sam-b") == "sam-b.official"
    assert "sam-b.official" in models.names() and "flip-tiny-h.authors" in models.names()
    with pytest.raises(models.ModelError, match="unknown model"):
        models.create("flip-huge")
    with pytest.raises(models.ModelError, match="no weights tag"):
        models.create("flip-tiny.nonsense")


@pytest.mark.parametrize("authors_file_in_cache", [False, True])
def test_weights_tag_and_random_init_are_seeded_and_side_effect_free(authors_file_in_cache, tmp_path, monkeypatch):
    """The untagged name means the authors' weights only where their file is in the cache (a fresh clone: the
    project's checkpoint); a random init takes that entry's architecture and never touches the global RNG."""
    import torch

    cache = tmp_path / "cache"
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(cache))
    if authors_file_in_cache:  # resolution looks at which files are there, not into them
        (cache / "flip").mkdir(parents=True)
        (cache / "flip" / "flip-tiny-fused.onnx").write_bytes(b"placeholder")
    expected = "flip-tiny.authors" if authors_file_in_cache else "flip-tiny.project"
    state = torch.get_rng_state()
    a = models.create("flip-tiny", weights="random", seed=3)
    b = models.create("flip-tiny", weights="random", seed=3)
    assert torch.equal(state, torch.get_rng_state())  # no global seeding
    assert a.weights_id == "random" and a.name == expected
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    p = models.create("flip-tiny", weights="project")  # --weights project: the committed checkpoint
    assert p.name == "flip-tiny.project" and p.weights_id.startswith("project:")
    assert p.predictor.sampler_compat == "exact" and p.predictor.convention == "pixel"


def test_missing_baseline_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path))
    monkeypatch.delenv("FLIP_SUITE_DOWNLOAD", raising=False)
    with pytest.raises(models.ModelError, match="sam_vit_b_01ec64.pth.*dl.fbaipublicfiles.com"):
        models.create("sam-b")
    with pytest.raises(models.ModelError, match="does not exist"):
        models.create("sam-b", weights=str(tmp_path / "nope.pth"))


def test_noop_and_oracle_box():
    from segcore.prompt import Prompt

    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    for model, expect in ((models.create("noop"), np.zeros_like(m)), (models.create("oracle-box"), m)):
        model.set_image(np.zeros((10, 12, 3), np.uint8))
        (pred,) = model.predict([Prompt.from_mask(m)])
        np.testing.assert_array_equal(pred, expect)
        assert set(model.timings) <= set(models.PHASES)
    assert not models.iou_is_meaningful("none") and not models.iou_is_meaningful("random")
    assert models.iou_is_meaningful("authors:flip-tiny-fused.onnx")


@pytest.mark.skipif(not (ROOT / "data/objascale-mini/annotations.json").is_file(), reason="data/objascale-mini not rendered")
def test_objascale_folder_and_its_hdf5_export_agree():
    from segcore.datasets import open_dataset

    folder = open_dataset(str(ROOT / "data/objascale-mini"))
    h5s = sorted((ROOT / "data/objascale-mini").glob("*.hdf5"))
    if not h5s:
        pytest.skip("no HDF5 export in data/objascale-mini")
    h5 = open_dataset(str(h5s[0]))
    a = [(e, o) for e in folder.index() for o in e.objects]
    b = [(e, o) for e in h5.index() for o in e.objects]
    if len(a) != len(b):
        pytest.skip("the HDF5 export holds one split only")
    for (ea, oa), (eb, ob) in list(zip(a, b))[:10]:
        ma = folder.load_masks(ea, [oa.object_id])[oa.object_id]
        mb = h5.load_masks(eb, [ob.object_id])[ob.object_id]
        np.testing.assert_array_equal(ma, mb)  # RLE in the json, PNG in the HDF5: decoded independently


@pytest.mark.reference("onnx")
def test_flip_tiny_with_authors_weights_through_the_harness(tmp_path, authors_cache):
    """The real model in the real loop: authors' weights id, token counts and a meaningful IoU are recorded."""
    from segcore.records import read_rows
    from benchmark.runner import RunConfig, Runner
    from tests.fixtures import make_coco_dataset

    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=1, sizes=((48, 64),), polygons=False)
    cfg = RunConfig(models=["flip-tiny"], datasets=[str(data)], run_dir=str(tmp_path / "run"),
                    threads=1, warmup=0, progress=False)
    runner = Runner(cfg)
    assert runner.resolution_lines() == [f"flip-tiny → flip-tiny.authors (found flip-tiny-fused.onnx in {authors_cache / 'flip'})"]
    c = runner.run()
    rows = read_rows(tmp_path / "run")
    assert c.ok == 2 and len(rows) == 2
    for r in rows:
        assert r["weights_id"].startswith("authors") and r["num_parameters"] > 500_000
        assert 0.0 <= r["iou"] <= 1.0 and r["tokens"] > 0 and r["t_encoder"] > 0


def test_a_name_resolves_with_its_reason(tmp_path, monkeypatch):
    """One meaning for a name: which entry, which files, and why, from the registry (torch-free)."""
    from segcore import registry

    cache = tmp_path / "cache"
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(cache))
    models.names()
    r = registry.resolve("flip-tiny")
    assert r.name == "flip-tiny.project" and [p.name for p in r.files] == ["flip-tiny-objascale.pt"]
    assert r.line() == ("flip-tiny → flip-tiny.project (the authors' published weights are not in the cache "
                        f"{cache / 'flip'}: make weights MODEL=flip-tiny.authors; found flip-tiny-objascale.pt "
                        "packaged with the project)")
    assert registry.resolve("flip-tiny.authors").line().startswith("flip-tiny.authors → flip-tiny.authors (tag named; "
                                                                 "the authors' published weights are not in the cache")
    assert registry.resolve("noop").line() == "noop → noop (no weights needed)"
    assert registry.resolve("flip-small-maxpatch4").name == "flip-small-maxpatch4.random"
    (cache / "flip").mkdir(parents=True)
    (cache / "flip" / "flip-tiny-fused.onnx").write_bytes(b"x")
    r = registry.resolve("flip-tiny")
    assert r.name == "flip-tiny.authors" and r.line() == f"flip-tiny → flip-tiny.authors (found flip-tiny-fused.onnx in {cache / 'flip'})"
    assert registry.get("flip-tiny") is r.entry  # get() and resolve() are one decision
    # the harness's view: --weights and --mode show in the line
    assert models.resolution("flip-tiny", weights="project").line().startswith("flip-tiny --weights project → flip-tiny.project (tag named; found")
    assert models.resolution("flip-tiny", weights="random", mode="hierarchical").line() == \
        "flip-tiny --weights random → flip-tiny-h.authors (seeded random init: timing only, IoU n/a)"
    w = tmp_path / "mine.pt"
    assert models.resolution("flip-tiny", weights=str(w)).line() == f"flip-tiny --weights {w} → flip-tiny.authors (weights file given: {w})"


def test_the_registry_resolution_stays_torch_free():
    import subprocess
    import sys

    code = ("import sys; from segcore import registry, hub; registry.register(registry.ModelEntry('m', 'a', None, "
            "weights=(hub.WeightFile('w.bin', 'x', 'authors'),))); registry.register(registry.ModelEntry('m', 'b', None)); "
            "print(registry.resolve('m').line()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()
    assert out[0].startswith("m → m.b (the authors' published weights are not in the cache ") and out[0].endswith(
        "make weights MODEL=m.a; no weights needed)")
    assert out[1] == "False"
