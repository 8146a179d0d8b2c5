"""numerics.ort_order(): MLAS-order Linear and Sigmoid, checked bit-for-bit against onnxruntime on one-node graphs."""
import numpy as np
import pytest
import torch

from flip.modeling import numerics
from flip.modeling.numerics import Linear, SiLU, fma_matmul, mlas_sigmoid, ort_order


def _ort_single_node(op, inputs, attrs=None, initializers=()):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names + [n for n, _ in initializers], ["y"], **(attrs or {}))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape))
                                            for n, x in zip(names, inputs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(["y"], dict(zip(names, inputs)))[0]


def test_gemm_matches_onnxruntime_bitwise():
    rng = np.random.default_rng(0)
    for k in (2, 64, 256):  # the K of every Gemm in FLIP
        x = (rng.normal(size=(97, k)) * 30).astype(np.float32)
        w = rng.normal(size=(40, k)).astype(np.float32)
        b = rng.normal(size=40).astype(np.float32)
        ref = _ort_single_node("Gemm", [x], {"transB": 1}, [("w", w), ("b", b)])
        ours = fma_matmul(torch.from_numpy(x), torch.from_numpy(w).t(), torch.from_numpy(b)).numpy()
        assert np.array_equal(ours, ref), f"K={k}: {np.mean(ours != ref):.3f} of entries differ"
        fast = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
        assert np.allclose(fast, ref, rtol=1e-4, atol=1e-2)  # same maths, different rounding


def test_sigmoid_matches_onnxruntime_bitwise():
    x = np.concatenate([np.linspace(-30, 30, 4001), np.random.default_rng(1).normal(size=3000) * 4]).astype(np.float32)
    ref = _ort_single_node("Sigmoid", [x])
    assert np.array_equal(mlas_sigmoid(torch.from_numpy(x)).numpy(), ref)
    assert np.allclose(torch.sigmoid(torch.from_numpy(x)).numpy(), ref, atol=1e-6)


def test_ort_order_is_scoped_and_close_to_default():
    lin, act = Linear(16, 8), SiLU()
    x = torch.randn(5, 16)
    with torch.no_grad():
        fast = act(lin(x))
        assert not numerics.ort_order_enabled()
        with ort_order():
            assert numerics.ort_order_enabled()
            slow = act(lin(x))
        assert not numerics.ort_order_enabled()
    assert slow.dtype == torch.float32 and torch.allclose(fast, slow, atol=1e-5)
    # batched matmul with K > 256 spans two MLAS K blocks
    a, b = torch.randn(2, 3, 300), torch.randn(2, 300, 4)
    assert torch.allclose(fma_matmul(a, b), a @ b, atol=1e-4)


def test_inference_folds_match_plain_graph_and_follow_weight_updates():
    """Without autograd the model folds LayerNorm affines into one QKV matmul and the decoder tail into two vectors;
    with autograd (training) it runs the plain graph. Both must agree, also after the weights change."""
    from flip.modeling import FLIP, FlipConfig, TokenBatch

    torch.manual_seed(0)
    model = FLIP(FlipConfig()).eval()
    rng = np.random.default_rng(0)
    patches = [[rng.random((n, 3, p, p)).astype(np.float32) for n, p in zip((5, 4, 3, 2, 1), (1, 2, 4, 8, 16))]]
    coords = [[rng.normal(size=(n, 2)).astype(np.float32) * 0.2 for n in (5, 4, 3, 2, 1)]]
    batch = TokenBatch.from_objects(patches, coords, [[0, 0, 0.1, 0.15, 0.6, 0.8]], (1, 2, 4, 8, 16))
    q = torch.randn(5000, 2) * 0.3  # large enough for the oneDNN products (≥ 1M multiply-adds)

    def both():
        with torch.enable_grad():
            plain = model(batch, q).detach()
        with torch.inference_mode():
            folded = model(batch, q)
        return plain, folded

    plain, folded = both()
    assert torch.allclose(plain, folded, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # a training step / load_state_dict changes weights in place: the folds must follow
        for p in model.parameters():
            p.mul_(1.05)
    plain2, folded2 = both()
    assert not torch.allclose(plain, plain2, atol=1e-3)
    assert torch.allclose(plain2, folded2, atol=1e-4, rtol=1e-4)


def test_dnnl_attention_matches_sdpa_and_multi_object_decoder():
    if numerics.pack_weight(torch.ones(2, 2)) is None:
        pytest.skip("oneDNN not available in this torch build")
    torch.manual_seed(0)
    q, k, v = torch.randn(1100, 64) * 8, torch.randn(300, 64) * 8, torch.randn(300, 64)
    split = lambda x: x.view(x.shape[0], 4, 16).transpose(0, 1)  # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(0, 1).reshape(1100, 64)
    with numerics.flush_denormals():
        ours = numerics.dnnl_attention(q, numerics.packed_heads(k, v, 4), 0.25)
    assert torch.allclose(ours, ref, atol=1e-4)
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # denormal mode restored

    from flip.modeling import FLIP, FlipConfig, KVCache

    model = FLIP(FlipConfig()).eval()
    cache = KVCache(torch.randn(500, 64) * 3, torch.randn(500, 64), np.array([300, 200]),
                    torch.tensor([[0, 0, 0.1, 0.2, 0.6, 0.8], [0.3, -0.2, 0.3, 0.1, 1.0, 0.0]]))
    coords = torch.rand(3000, 2) - 0.5
    with torch.enable_grad():
        plain = model.decode(cache, coords, [1000, 2000]).detach()  # SDPA per object
    with torch.inference_mode():
        fast = model.decode(cache, coords, [1000, 2000])  # one 4096 chunk spanning both objects → oneDNN path
    assert cache.packed and set(cache.packed) == {0, 1}
    assert torch.allclose(plain, fast, atol=1e-3, rtol=1e-4)
