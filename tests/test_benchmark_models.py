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
    assert "sam-b.official" in models.available() and "flip-tiny-h.authors" in models.available()
    with pytest.raises(models.ModelError, match="unknown model"):
        models.create("flip-huge")
    with pytest.raises(models.ModelError, match="no weights tag"):
        models.create("flip-tiny.nonsense")


def test_weights_tag_and_random_init_are_seeded_and_side_effect_free():
    import torch

    state = torch.get_rng_state()
    a = models.create("flip-tiny", weights="random", seed=3)
    b = models.create("flip-tiny", weights="random", seed=3)
    assert torch.equal(state, torch.get_rng_state())  # no global seeding
    assert a.weights_id == "random" and a.name == "flip-tiny.authors"
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


def _reference_onnx():
    p = ROOT.parent / "shared" / "reference" / "flip-tiny-fused.onnx"
    return p if p.is_file() else None


@pytest.mark.skipif(_reference_onnx() is None, reason="authors' flip-tiny-fused.onnx not found (../shared/reference absent)")
def test_flip_tiny_with_authors_weights_through_the_harness(tmp_path):
    """The real model in the real loop: authors' weights id, token counts and a meaningful IoU are recorded."""
    from segcore.records import read_rows
    from benchmark.runner import RunConfig, Runner
    from tests.fixtures import make_coco_dataset

    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=1, sizes=((48, 64),), polygons=False)
    cfg = RunConfig(models=["flip-tiny.authors"], datasets=[str(data)], run_dir=str(tmp_path / "run"),
                    threads=1, warmup=0, progress=False)
    c = Runner(cfg).run()
    rows = read_rows(tmp_path / "run")
    assert c.ok == 2 and len(rows) == 2
    for r in rows:
        assert r["weights_id"].startswith("authors") and r["num_parameters"] > 500_000
        assert 0.0 <= r["iou"] <= 1.0 and r["tokens"] > 0 and r["t_encoder"] > 0
