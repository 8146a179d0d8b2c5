"""Model registry dispatch, and the real ObjaScale export read through both adapters (skipped when absent)."""
from pathlib import Path

import numpy as np
import pytest

from benchmark import models

ROOT = Path(__file__).resolve().parents[1]


def test_dispatch_flip_and_baselines(monkeypatch):
    import baselines
    import flip

    calls = []

    def fake_flip(name, weights=None, mode="5sigma", device=None, seed=0):
        calls.append(("flip", name, weights, mode, seed))
        return models.NoopSegmenter()

    def fake_baseline(name, weights=None):
        calls.append(("baseline", name, weights))
        return models.NoopSegmenter()

    monkeypatch.setattr(flip, "create_segmenter", fake_flip)
    monkeypatch.setattr(baselines, "create", fake_baseline)
    models.create("flip-small", weights="random", seed=3)
    models.create("flip-tiny-h", weights=None)
    models.create("sam-b", weights="/x/sam.pth")
    assert calls == [("flip", "flip-small", "random", "5sigma", 3), ("flip", "flip-tiny", None, "hierarchical", 0),
                     ("baseline", "sam-b", "/x/sam.pth")]
    assert models.record_name("flip-tiny", "hierarchical") == "flip-tiny-h"
    assert models.record_name("flip-tiny-h", "hierarchical") == "flip-tiny-h"
    assert models.record_name("sam-b", "hierarchical") == "sam-b"


def test_non_segmenters_and_build_errors_are_model_errors(monkeypatch):
    import baselines

    monkeypatch.setattr(baselines, "create", lambda name, weights=None: object())
    with pytest.raises(models.ModelError, match="Segmenter protocol"):
        models.create("sam-b")

    def missing(name, weights=None):
        raise FileNotFoundError("sam_vit_b.pth not found; download it from ...")

    monkeypatch.setattr(baselines, "create", missing)
    with pytest.raises(models.ModelError, match="sam_vit_b.pth"):
        models.create("sam-b")


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
    import os

    p = os.environ.get("FLIP_REFERENCE_ONNX") or str(ROOT.parent / "shared" / "reference" / "flip-tiny-fused.onnx")
    return Path(p) if Path(p).is_file() else None


@pytest.mark.skipif(_reference_onnx() is None, reason="authors' flip-tiny-fused.onnx not found (../shared/reference or $FLIP_REFERENCE_ONNX)")
def test_flip_tiny_with_authors_weights_through_the_harness(tmp_path):
    """The real model in the real loop: authors' weights id, token counts and a meaningful IoU are recorded."""
    from segcore.records import read_rows
    from benchmark.runner import RunConfig, Runner
    from benchmark.synthetic import make_coco_dataset

    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=1, sizes=((48, 64),), polygons=False)
    cfg = RunConfig(models=["flip-tiny"], datasets=[str(data)], run_dir=str(tmp_path / "run"), weights="authors",
                    threads=1, warmup=0, progress=False)
    c = Runner(cfg).run()
    rows = read_rows(tmp_path / "run")
    assert c.ok == 2 and len(rows) == 2
    for r in rows:
        assert r["weights_id"].startswith("authors") and r["num_parameters"] > 500_000
        assert 0.0 <= r["iou"] <= 1.0 and r["tokens"] > 0 and r["t_encoder"] > 0
