"""Each wrapper at random init on a small image: shapes, dtypes, round trips through the real loading paths,
mismatch errors, box conversions. Only the light encoders run forwards here; SAM's run under -m slow."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import baselines
from baselines.weights import WeightsError
from segcore.prompt import Prompt, PromptError

from ._baselines_util import H, W, image, masks, prompts
from .fixtures import assert_segmenter_behaves

LIGHT = ["mobilesam", "efficientsam-t", "fastsam-s"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLIP_SUITE_DOWNLOAD", raising=False)


def _run(seg, img=None, ps=None):
    seg.set_image(image() if img is None else img)
    return seg.predict(prompts() if ps is None else ps)


def _check_outputs(seg, out, n=3):
    assert_segmenter_behaves(seg, image(), prompts())  # the protocol by behaviour, not by attribute names
    assert len(out) == n
    for m in out:
        assert m.dtype == np.bool_ and m.shape == (H, W)
    assert {"encoder", "decoder", "postprocess"} <= set(seg.timings)
    assert all(v >= 0 for v in seg.timings.values())
    assert seg.weights_id == "random" and seg.num_parameters > 0


@pytest.mark.parametrize("name", LIGHT)
def test_light_models_predict_full_resolution_bool_masks(name):
    torch.manual_seed(0)
    seg = baselines.create(name, weights="random", device="cpu")
    _check_outputs(seg, _run(seg))
    assert seg.predict([]) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam-b", "sam-l", "sam-h", "efficientsam-s", "fastsam-x"])
def test_heavy_models_predict_full_resolution_bool_masks(name):
    seg = baselines.create(name, weights="random", device="cpu")
    _check_outputs(seg, _run(seg))


def test_predict_before_set_image_and_bad_boxes_are_clear_errors():
    seg = baselines.create("efficientsam-t", weights="random", device="cpu")
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict(prompts())
    seg.set_image(image())
    bad = Prompt(np.zeros(5), np.array([10.0, 10.0, 5.0, 20.0]), W, H)
    with pytest.raises(PromptError, match="x1 > x0"):
        seg.predict([bad])
    other = Prompt.from_mask(np.pad(masks()[0], ((0, 8), (0, 0))))  # made for a taller image
    with pytest.raises(PromptError, match="image"):
        seg.predict([other])


def test_mobilesam_state_dict_round_trip(tmp_path):
    torch.manual_seed(1)
    a = baselines.create("mobilesam", weights="random", device="cpu")
    path = tmp_path / "mobile_sam.pt"
    torch.save(a.sam.state_dict(), path)  # the official file is a bare state dict
    b = baselines.create("mobilesam", weights=path, device="cpu")
    assert b.weights_id.startswith("file:mobile_sam.pt@sha256:")
    for x, y in zip(_run(a), _run(b)):
        np.testing.assert_array_equal(x, y)


def test_sam_b_state_dict_round_trip_without_forward(tmp_path):
    from baselines.sam import build_sam_module

    a, _ = build_sam_module("sam-b", "random")
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(a.state_dict(), path)
    b, wid = build_sam_module("sam-b", path)
    assert wid.startswith("file:sam_vit_b_01ec64.pth@sha256:")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_sam_rejects_a_mobilesam_checkpoint_naming_keys(tmp_path):
    from baselines.mobilesam import build_mobilesam_module

    m, _ = build_mobilesam_module("random")
    path = tmp_path / "mobile_sam.pt"
    torch.save(m.state_dict(), path)
    with torch.device("meta"):  # only the key check runs; no weights are materialised
        with pytest.raises(WeightsError, match=r"sam-b: .*missing keys: image_encoder\.") as e:
            from baselines.sam import build_sam_module

            build_sam_module("sam-b", path)
    assert "unexpected keys: image_encoder." in str(e.value)


def test_efficientsam_round_trip_in_the_official_checkpoint_layout(tmp_path):
    torch.manual_seed(2)
    a = baselines.create("efficientsam-t", weights="random", device="cpu")
    path = tmp_path / "efficient_sam_vitt.pt"
    torch.save({"model": a.model.state_dict()}, path)
    b = baselines.create("efficientsam-t", weights=path, device="cpu")
    for x, y in zip(_run(a), _run(b)):
        np.testing.assert_array_equal(x, y)


def test_efficientsam_mismatch_names_keys_and_shapes(tmp_path):
    from baselines.efficientsam_model import build_efficient_sam

    sd = build_efficient_sam("vitt").state_dict()
    path = tmp_path / "vitt.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match=r"efficientsam-s: .*shape mismatches: image_encoder\.pos_embed: file \(1, 197, 192\) vs model \(1, 197, 384\)"):
        baselines.create("efficientsam-s", weights=path)
    del sd["mask_decoder.iou_token.weight"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match=r"missing keys: mask_decoder\.iou_token\.weight.*unexpected keys: extra\.weight"):
        baselines.create("efficientsam-t", weights=path)


def _official_export(path, seed: int, tweak=None):
    """An export made as the official export_to_torchscript.py makes it: torch.jit.save(torch.jit.script(model))
    of the freshly built model, here with seeded random weights of the project's EfficientSAM-T."""
    from baselines.efficientsam_model import build_efficient_sam

    torch.manual_seed(seed)
    model = build_efficient_sam("vitt")
    if tweak is not None:
        tweak(model)
    torch.jit.save(torch.jit.script(model), str(path))
    return model


def _prefer_mask(index: int):
    """Make the IoU head predict the highest IoU for one multimask output, whatever the input."""

    def tweak(model):
        last = model.mask_decoder.iou_prediction_head.fc
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3]))
            last.bias[1 + index] = 5.0

    return tweak


def test_efficientsam_official_torchscript_export_gives_the_eager_masks(tmp_path):
    path = tmp_path / "efficient_sam_vitt_torchscript.pt"
    eager_model = _official_export(path, seed=3)
    scripted = torch.jit.load(str(path))
    args = [a.name for a in scripted.predict_masks.schema.arguments][1:7]
    assert args == ["image_embeddings", "batched_points", "batched_point_labels", "multimask_output", "input_h", "input_w"]
    a = baselines.create("efficientsam-t", weights="random", device="cpu")
    a.model.load_state_dict(eager_model.state_dict())
    b = baselines.create("efficientsam-t", weights=path, device="cpu")
    assert isinstance(b.model, torch.jit.ScriptModule) and b.num_parameters == a.num_parameters
    # the official eager model end to end (forward passes the true size), best predicted IoU kept, as upstream
    ps = prompts()
    boxes = torch.tensor(np.stack([p.box_xyxy for p in ps]), dtype=torch.float32).reshape(1, len(ps), 2, 2)
    x = torch.as_tensor(image()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        full, iou = eager_model(x, boxes, torch.tensor([2, 3]).expand(1, len(ps), 2))
        ref = (torch.take_along_dim(full[0], iou[0].argmax(-1)[:, None, None, None], dim=1)[:, 0] >= 0).numpy()
    for r, x, y in zip(ref, _run(a, ps=ps), _run(b, ps=ps)):
        assert r.any()
        assert (x != r).mean() < 1e-3 and (y != r).mean() < 1e-3  # scripted kernels may round differently at 0


def test_efficientsam_points_are_rescaled_by_the_true_image_size():
    """The official predict_masks rescales points by input_h/input_w: the wrapper must give the image's size
    (−1 turns every box corner into a large negative coordinate)."""
    seg = baselines.create("efficientsam-t", weights="random", device="cpu")
    seg.set_image(image())
    calls = {}
    real = seg.model.predict_masks

    def spy(emb, points, labels, multimask, input_h, input_w):
        calls.update(points=points.clone(), labels=labels.clone(), multimask=multimask, size=(input_h, input_w))
        return real(emb, points, labels, multimask, input_h, input_w)

    seg.model.predict_masks = spy
    ps = prompts()
    seg.predict(ps)
    expect = torch.tensor(np.stack([p.box_xyxy for p in ps]), dtype=torch.float32).reshape(1, 3, 2, 2)
    torch.testing.assert_close(calls["points"], expect)
    assert calls["labels"].tolist() == [[[2, 3]] * 3] and calls["multimask"] is True
    assert calls["size"] == (H, W)


@pytest.mark.parametrize("preferred", [0, 2])
def test_efficientsam_keeps_the_mask_with_the_highest_predicted_iou(tmp_path, preferred):
    """The official code no longer sorts masks inside predict_masks; the wrapper picks the best itself,
    for the eager model and for an official-style export alike."""
    import torch.nn.functional as F

    path = tmp_path / "export.pt"
    model = _official_export(path, seed=4, tweak=_prefer_mask(preferred))
    ps = prompts()
    boxes = torch.tensor(np.stack([p.box_xyxy for p in ps]), dtype=torch.float32).reshape(1, len(ps), 2, 2)
    labels = torch.tensor([2, 3]).expand(1, len(ps), 2)
    x = torch.as_tensor(image()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        low, iou = model.predict_masks(model.get_image_embeddings(x), boxes, labels, True, H, W)
        assert iou.argmax(-1).unique().tolist() == [preferred]  # decoder order, not sorted
        expect = (F.interpolate(low[0, :, preferred : preferred + 1], (H, W), mode="bicubic") >= 0)[:, 0].numpy()
        other = (F.interpolate(low[0, :, (preferred + 1) % 3 :][:, :1], (H, W), mode="bicubic") >= 0)[:, 0].numpy()
    assert (expect != other).any()  # the choice is visible in the masks
    eager = baselines.create("efficientsam-t", weights="random", device="cpu")
    eager.model.load_state_dict(model.state_dict())
    scripted = baselines.create("efficientsam-t", weights=path, device="cpu")
    for seg in (eager, scripted):
        got = _run(seg, ps=ps)
        for g, e in zip(got, expect):
            assert (g != e).mean() < 1e-3


def test_efficientsam_export_with_another_predict_masks_signature_is_refused(tmp_path):
    """An export whose predict_masks has no input size where the official one has it would silently give
    wrong masks: refuse it with a clear error."""
    from baselines.efficientsam_model import build_efficient_sam

    class OldStyle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            inner = build_efficient_sam("vitt")
            self.image_encoder, self.prompt_encoder, self.mask_decoder = inner.image_encoder, inner.prompt_encoder, inner.mask_decoder
            self.register_buffer("pixel_mean", inner.pixel_mean, False)
            self.register_buffer("pixel_std", inner.pixel_std, False)

        @torch.jit.export
        def get_image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
            return self.image_encoder(x)

        @torch.jit.export
        def predict_masks(self, e: torch.Tensor, p: torch.Tensor, l: torch.Tensor, multimask: bool,
                          output_h: int = -1, output_w: int = -1) -> torch.Tensor:
            return e

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "old.pt"
    torch.jit.save(torch.jit.script(OldStyle()), str(path))
    with pytest.raises(WeightsError, match=r"predict_masks takes .*output_h.*expected the official .*input_h, input_w"):
        baselines.create("efficientsam-t", weights=path, device="cpu")


def test_sam_box_goes_through_the_resize_transform_unchanged_in_pixel_edges():
    seg = baselines.create("mobilesam", weights="random", device="cpu")
    seg.set_image(image())
    box = torch.tensor([[20.0, 10.0, 70.0, 40.0]])
    tb = seg.predictor.transform.apply_boxes_torch(box, (H, W))
    torch.testing.assert_close(tb, box * 1024 / W)  # longest side (W) scaled to 1024, no pixel shift


class _FakeMasks:
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)


class _FakeResult:
    def __init__(self, data):
        self.masks = None if data is None else _FakeMasks(data)
        self.speed = {"preprocess": 1.0, "inference": 2.0, "postprocess": 3.0}


def test_fastsam_picks_the_candidate_with_highest_box_iou(monkeypatch):
    seg = baselines.create("fastsam-s", weights="random", device="cpu")
    ms = masks()
    big = np.zeros((H, W), bool)
    big[5:60, 10:90] = True  # overlaps box 0 fully but is much larger
    cands = torch.tensor(np.stack([big, ms[1], ms[0]]), dtype=torch.float32)
    monkeypatch.setattr(seg, "segment_everything", lambda bgr: _FakeResult(cands))
    seg.set_image(image())
    out = seg.predict(prompts()[:2])
    np.testing.assert_array_equal(out[0], ms[0])
    np.testing.assert_array_equal(out[1], ms[1])
    assert seg.timings["encoder"] == pytest.approx(0.003)


def test_fastsam_without_candidates_returns_empty_masks(monkeypatch):
    seg = baselines.create("fastsam-s", weights="random", device="cpu")
    monkeypatch.setattr(seg, "segment_everything", lambda bgr: _FakeResult(None))
    out = _run(seg)
    assert len(out) == 3 and all(m.shape == (H, W) and m.dtype == np.bool_ and not m.any() for m in out)


def test_fastsam_box_widening_to_whole_pixels():
    from baselines.fastsam import box_iou_scores

    cand = torch.zeros(1, 10, 10, dtype=torch.bool)
    cand[0, 2:5, 3:7] = True
    areas = cand.sum(dim=(1, 2)).double()
    assert box_iou_scores(cand, areas, np.array([3.0, 2.0, 7.0, 5.0])).item() == 1.0
    assert box_iou_scores(cand, areas, np.array([3.4, 2.2, 6.5, 4.1])).item() == 1.0  # floor / ceil
    assert box_iou_scores(cand, areas, np.array([-5.0, -5.0, 50.0, 50.0])).item() == pytest.approx(12 / 100)


def test_fastsam_restores_torch_threads_and_round_trips_a_checkpoint(tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(4)
    a = baselines.create("fastsam-s", weights="random", device="cpu")
    a.set_image(image())
    assert torch.get_num_threads() == 2
    path = tmp_path / "FastSAM-s.pt"
    from ultralytics.nn.tasks import SegmentationModel

    net = SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False)
    net.load_state_dict(a.yolo.model.state_dict(), strict=False)  # a's net is fused after its first call
    net.args, net.names = {"task": "segment", "imgsz": 1024}, {0: "object"}
    torch.save({"model": net, "train_args": net.args}, path)  # ultralytics' checkpoint layout
    b = baselines.create("fastsam-s", weights=path, device="cpu")
    assert b.weights_id.startswith("file:FastSAM-s.pt@sha256:") and b.num_parameters == a.num_parameters
    with pytest.raises(WeightsError, match=r"fastsam-x: .*shape mismatches"):
        baselines.create("fastsam-x", weights=path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot load .*junk.pt"):
        baselines.create("fastsam-s", weights=tmp_path / "junk.pt")
