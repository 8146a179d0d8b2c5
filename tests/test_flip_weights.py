"""Weight import (ckpt / ONNX), error reporting, pretrained resolution, and parity with the authors' ONNX."""
import numpy as np
import pytest
import torch

import flip
from flip import weights as W
from flip.modeling import TokenBatch
from flip.modeling.numerics import ort_order

from .flip_testutil import SIZES, allocation, crop_patches, position, reference_onnx, synthetic_image

REF = reference_onnx()
needs_ref = pytest.mark.skipif(not REF.is_file(), reason=f"authors' FLIP-Tiny ONNX not found at {REF} (set FLIP_REFERENCE_ONNX)")


def test_strip_prefix():
    assert W.strip_prefix("net.encoder.layers.0.alpha") == "layers.0.alpha"
    assert W.strip_prefix("flip_encoder.sparsify.patch_embeddings.3.layers.1.weight") == "sparsify.patch_embeddings.3.layers.1.weight"
    assert W.strip_prefix("optimizer.step") is None


def test_checkpoint_roundtrip_with_lightning_prefix(tmp_path):
    src = flip.create_model("flip-tiny")
    sd = {f"net.encoder.{k}": v for k, v in src.state_dict().items()}
    sd["net.encoder.sparsify.patch_sizes"] = torch.tensor([1.0, 2, 4, 8, 16])  # authors' buffer, ignored
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "x.ckpt")
    dst = flip.create_model("flip-tiny")
    flip.load_weights(dst, tmp_path / "x.ckpt")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_mismatched_state_dict_lists_keys():
    m = flip.create_model("flip-tiny")
    sd = dict(flip.create_model("flip-small").state_dict())
    with pytest.raises(W.WeightImportError) as err:
        W.load_state_dict_checked(m, sd, "small weights")
    msg = str(err.value)
    assert "shape mismatch" in msg and "sparsify.registers: file (8, 128) vs model (8, 64)" in msg
    sd = dict(m.state_dict())
    del sd["layers.2.mlp.weight1"]
    sd["layers.9.alpha"] = torch.ones(1)
    with pytest.raises(W.WeightImportError, match=r"missing \(1\): layers.2.mlp.weight1 \(256, 64\)") as err:
        W.load_state_dict_checked(m, sd)
    assert "unexpected (1): layers.9.alpha" in str(err.value)


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIP_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("FLIP_REFERENCE_ONNX", str(tmp_path / "nope.onnx"))
    monkeypatch.setenv("FLIP_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"manuel-traub.de/onnx/flip-\{encoder,predictor\}-small.onnx"):
        flip.pretrained("flip-small")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        flip.pretrained("flip-tiny", path=tmp_path / "missing.ckpt")


def test_weight_source_hook(tmp_path, monkeypatch):
    """Other parts may register extra sources (e.g. a project-trained FLIP-Tiny); non-authors' ids say so."""
    monkeypatch.setenv("FLIP_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("FLIP_OFFLINE", "1")
    monkeypatch.setenv("FLIP_REFERENCE_ONNX", str(tmp_path / "nope.onnx"))
    monkeypatch.setattr(W, "PROJECT_WEIGHTS_DIR", tmp_path / "no-project-weights")  # a trained file may exist
    torch.save(flip.create_model("flip-tiny").state_dict(), tmp_path / "mine.pt")
    src = W.WeightSource("project", lambda name: tmp_path / "mine.pt" if name == "flip-tiny" else None, authors=False)
    monkeypatch.setattr(W, "WEIGHT_SOURCES", W.WEIGHT_SOURCES + [src])
    m = flip.pretrained("flip-tiny")
    assert m.weights_id.startswith("project:mine.pt@sha256:") and m.gaussian_convention == "pixel"


@needs_ref
def test_onnx_import_uses_every_initializer():
    import onnx

    sd = W.onnx_state_dict(REF)
    n_init = len(onnx.load(str(REF)).graph.initializer)
    assert len(sd) == n_init == 197
    m = flip.create_model("flip-tiny")
    assert W.load_state_dict_checked(m, sd) == ["sparsify.register_coordinates"]
    assert sum(int(np.prod(v.shape)) for v in sd.values()) == 513_788
    # anonymous ones landed where the graph uses them
    assert sd["sparsify.patch_embeddings.3.layers.1.weight"].shape == (16, 12)
    assert sd["mask_extractor.postprocess.weight2"].shape == (64, 256)
    # the authors' α values (spec §4.4/§5) are where we expect them
    assert abs(float(sd["mask_extractor.preprocess.alpha"][0]) - 27.45) < 0.01


@needs_ref
def test_pretrained_finds_shared_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("FLIP_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("FLIP_REFERENCE_ONNX", str(REF))
    m = flip.pretrained("flip-tiny")
    assert m.weights_id == "authors:flip-tiny-fused.onnx@sha256:ef53c2774528"
    assert m.gaussian_convention == "per-axis"


# Issue target: max |Δlogit| ≤ 2e-3 against onnxruntime. The decoder's attention scores reach ~5000, so 1-ulp
# differences upstream of the keys move softmax weights by ~1e-3: with torch's own kernels (the fast default path) the
# max is ~3.8e-3. Under numerics.ort_order() our Linear/MatMul/SiLU reproduce MLAS' fp32 operation order (measured
# bit-exact per node, see flip/modeling/numerics.py) and the max is ≤ 1e-3 on these inputs.
PARITY_MAX = 2e-3
PARITY_MEAN = 2e-4
DEFAULT_PATH_MEAN = 1e-3  # the fast path: mean only, plus identical foreground decisions


@needs_ref
def test_parity_with_authors_onnx():
    """Same patches/coords/queries into our FLIP-Tiny (imported weights) and onnxruntime (no graph optimisation)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(REF), so, providers=["CPUExecutionProvider"])
    m = flip.pretrained("flip-tiny", path=REF).eval()
    img = synthetic_image()
    h, w = img.shape[:2]
    rng = np.random.default_rng(0)
    worst = 0.0
    # object sizes from ~2 px (σ=0.7) to half the image (σ=64); the small ones have empty 8/16 levels
    for sig in (0.7, 1.5, 3.0, 10.0, 30.0, 64.0):
        mu = np.array([150.0, 120.0])
        P, C = crop_patches(img, mu, sig, allocation(sig), rng)
        counts = [len(c) for c in C]
        pos = position(mu, sig, 1.3 * sig, 0.6, 0.8, w, h)[None]
        batch = TokenBatch.from_objects([P], [C], pos, SIZES)
        r = 5 * 1.3 * sig
        n = 1500
        q = np.stack([mu[0] + rng.uniform(-r, r, n), mu[1] + rng.uniform(-r, r, n)], 1)
        q = (q / 128 - np.array([w, h]) / 256).astype(np.float32)
        feeds = {f"patches_p{p}": batch.patches[i].numpy() for i, p in enumerate(SIZES)}
        feeds.update({f"coords_p{p}": batch.coords[i].numpy() for i, p in enumerate(SIZES)})
        feeds.update(position=pos, mask_coordinates=q)
        ref = sess.run(["mask_logits"], feeds)[0]
        with torch.inference_mode():
            fast = m(batch, torch.from_numpy(q)).numpy()
            with ort_order():
                ours = m(batch, torch.from_numpy(q)).numpy()
        d, d_fast = np.abs(ours - ref), np.abs(fast - ref)
        diff = float(d.max())
        print(f"sigma {sig:5.1f} px counts {counts}: ort_order max |Δlogit| {diff:.2e}, mean {d.mean():.2e} | "
              f"default path max {d_fast.max():.2e}, mean {d_fast.mean():.2e}")
        worst = max(worst, diff)
        assert d.mean() <= PARITY_MEAN
        assert d_fast.mean() <= DEFAULT_PATH_MEAN
        sure = np.abs(ref) > 1e-2
        assert np.array_equal(ours[sure] > 0, ref[sure] > 0)
        assert np.array_equal(fast[sure] > 0, ref[sure] > 0)
        if sig < 2:
            assert counts[3] == counts[4] == 0
    assert worst <= PARITY_MAX
