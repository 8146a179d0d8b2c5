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
