"""FlipPredictor / Segmenter adapter: modes, batching, degenerate inputs, hierarchical schedule (docs/flip.md §7)."""
import numpy as np
import pytest
import torch

import flip
from tests.fixtures import assert_segmenter_behaves
from flip.predictor import SIGMA_MIN_PX, FlipPredictor, box_5sigma, hierarchical_sizes
from segcore.prompt import Prompt, PromptError

from . import reference

pytest.importorskip("flip._fovea", reason="C fovea sampler extension not built (python setup.py build_ext --inplace)")


@pytest.mark.parametrize("box,sizes", [
    ((100, 100), [(45, 45), (100, 100)]),
    ((300, 300), [(45, 45), (300, 300)]),
    ((1000, 1000), [(45, 45), (212, 212), (1000, 1000)]),
])
def test_hierarchical_schedule_spec_examples(box, sizes):
    assert hierarchical_sizes(*box) == sizes


def test_hierarchical_schedule_other_cases():
    s = hierarchical_sizes(3000, 2000)  # (w, h)
    assert len(s) == 4 and s[0] == (45, 67) and s[-1] == (2000, 3000)
    assert hierarchical_sizes(30, 20) == [(20, 30)]  # small box → one full-resolution pass


def test_box_5sigma():
    assert box_5sigma(np.array([50.0, 40.0, 2.0, 3.0, 0, 1]), 200, 100) == (35, 25, 65, 55)
    assert box_5sigma(np.array([0.0, 0.0, 0.01, 0.01, 0, 1]), 200, 100) is None
    assert box_5sigma(np.array([150.0, 50.0, 100.0, 1.0, 0, 1]), 200, 100) == (0, 0, 199, 99)


def _scene():
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 40, np.uint8)
    masks = [((xx - 40) / 15.0) ** 2 + ((yy - 40) / 10.0) ** 2 < 1,
             (np.abs(xx - 95) < 12) & (np.abs(yy - 60) < 20),
             (xx == 10) & (yy == 85)]  # a single pixel
    for m, c in zip(masks, ([220, 40, 40], [40, 200, 60], [255, 255, 255])):
        img[m] = c
    return img, masks


@pytest.fixture(scope="module")
def seg_random():
    return flip.create_segmenter("flip-tiny", weights="random", device="cpu", seed=3)


def test_segmenter_protocol(seg_random):
    img, masks = _scene()
    assert_segmenter_behaves(seg_random, img, [Prompt.from_mask(m) for m in masks])
    assert seg_random.weights_id == "random" and seg_random.num_parameters == 513_804


@pytest.mark.parametrize("mode", ["5sigma", "hierarchical"])
def test_predict_shapes_batching_and_timings(mode):
    img, masks = _scene()
    seg = flip.create_segmenter("flip-tiny", weights="random", mode=mode, device="cpu", seed=1)
    prompts = [Prompt.from_mask(m) for m in masks]
    seg.set_image(img)
    out = seg.predict(prompts)
    assert len(out) == 3 and all(o.shape == img.shape[:2] and o.dtype == bool for o in out)
    assert set(seg.timings) >= {"preprocess", "encoder", "decoder", "postprocess"}
    # predicted pixels lie inside the 5σ box
    for p, o in zip(prompts, out):
        from flip.gaussian import sampler_gaussian
        g = sampler_gaussian(p.rho, p.width, p.height, seg.predictor.convention)
        g[2:4] = np.maximum(g[2:4], SIGMA_MIN_PX)
        x0, y0, x1, y1 = box_5sigma(g, p.width, p.height)
        inside = np.zeros_like(o)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        assert not (o & ~inside).any()
    # determinism with an explicit seed
    seg.set_image(img)
    again = seg.predict(prompts)
    assert all(np.array_equal(a, b) for a, b in zip(again, out))


def test_packed_equals_separate_calls():
    img, masks = _scene()
    pred = FlipPredictor(flip.create_model("flip-tiny"), device="cpu", seed=5, convention="pixel")
    pred.set_image(img)
    prompts = [Prompt.from_mask(m) for m in masks[:2]]
    both = pred.predict(prompts)
    # object i keeps seed (run seed, i): compare with a batch where object 1 is predicted alone at index 1
    pred2 = FlipPredictor(pred.model, device="cpu", seed=5, convention="pixel")
    pred2.set_image(img)
    first = pred2.predict([prompts[0]])[0]
    assert np.array_equal(first, both[0])


def test_degenerate_inputs():
    img, masks = _scene()
    pred = FlipPredictor(flip.create_model("flip-tiny"), device="cpu")
    pred.set_image(img)
    tiny = Prompt.from_mask(masks[2])  # 1 px: variance 0, σ is clamped, must not crash
    out = pred.predict([tiny])
    assert isinstance(out, list) and len(out) == 1 and out[0].shape == img.shape[:2]  # the protocol: always a list
    with pytest.raises(TypeError, match="sequence"):
        pred.predict(tiny)
    bad = Prompt(np.array([0.0, 0.0, np.nan, 0.1, 0.0]), np.array([0, 0, 1, 1.0]), 128, 96)
    with pytest.raises(PromptError, match="object 1"):
        pred.predict([tiny, bad])
    wrong = Prompt.from_mask(np.ones((10, 10), bool))
    with pytest.raises(PromptError, match="object 0"):
        pred.predict([wrong])
    # a Gaussian centred far outside the image: empty box → empty mask, no crash
    far = Prompt(np.array([30.0, 30.0, 1e-4, 1e-4, 0.0]), np.array([0, 0, 1, 1.0]), 128, 96)
    assert not pred.predict([far])[0].any()
    with pytest.raises(RuntimeError, match="set_image"):
        FlipPredictor(pred.model, device="cpu").predict([tiny])


def test_unknown_mode():
    with pytest.raises(ValueError, match="hierarchical"):
        FlipPredictor(flip.create_model("flip-tiny"), mode="full")


@pytest.mark.reference("onnx")
@pytest.mark.parametrize("mode", ["5sigma", "hierarchical"])
def test_authors_weights_segment_synthetic_objects(mode, monkeypatch):
    """With the authors' weights the predictor segments clean synthetic objects well (sanity, not a benchmark)."""
    img, masks = _scene()
    seg = flip.create_segmenter("flip-tiny", weights=str(reference.onnx_path()), mode=mode, device="cpu")
    assert seg.predictor.convention == "per-axis"
    seg.set_image(img)
    out = seg.predict([Prompt.from_mask(m) for m in masks[:2]])
    for o, m in zip(out, masks[:2]):
        iou = (o & m).sum() / max((o | m).sum(), 1)
        assert iou > 0.7, iou
