"""FLIP model: parameter counts, component shapes, packing, KV cache, attention modes."""
import numpy as np
import pytest
import torch

import flip
from flip.modeling import FLIP, KVCache, PatchEmbedding, TokenBatch, count_parameters, packed_attention, relative_embedding
from flip.modeling.packing import object_major_index
from flip.variants import get_config

from .flip_testutil import SIZES, allocation, crop_patches, position, synthetic_image

EXPECTED = {
    "flip-tiny": 513_804, "flip-small": 2_344_690, "flip-middle": 11_518_267, "flip-large": 96_624_875,
    "flip-small-maxpatch4": 1_686_066, "flip-small-maxpatch64": 3_025_010, "flip-small-minpatch4": 2_204_658,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts(name):
    assert count_parameters(flip.create_model(name)) == EXPECTED[name]


def test_tiny_breakdown():
    m = flip.create_model("flip-tiny")
    assert count_parameters(m.sparsify.patch_embeddings) == 231_712
    assert count_parameters(m.layers[0]) == 60_035
    assert count_parameters(m.mask_extractor) == 101_443
    assert m.cfg.num_heads == 4


def test_unknown_model():
    with pytest.raises(KeyError, match="flip-tiny"):
        flip.create_model("flip-huge")


@pytest.mark.parametrize("p", [1, 2, 4, 8, 16, 32, 64])
def test_patch_embedding_shapes(p):
    emb = PatchEmbedding(p, 32)
    assert emb(torch.rand(3, 3, p, p)).shape == (3, 32)
    assert emb(torch.rand(0, 3, p, p)).shape == (0, 32)


def test_hierarchical_patch_embedding_grid_order():
    # p=8: sub-patch (h=0, w=1) covers rows 0-1, cols 2-3; its features are (c, h1, w1) ordered
    emb = PatchEmbedding(8, 16)
    x = torch.arange(3 * 64, dtype=torch.float32).view(1, 3, 8, 8)
    g = emb.layers[0](x)
    assert g.shape == (1, 4, 4, 12)
    assert torch.equal(g[0, 0, 1], x[0, :, 0:2, 2:4].reshape(-1))


def test_relative_embedding_whitens_and_clips():
    pos = torch.tensor([[0.0, 0.0, 0.1, 0.2, 0.0, 1.0]])  # a=0, b=1: x_rot = -dy, y_rot = dx
    c = torch.tensor([[0.05, 0.0], [0.0, 0.1], [10.0, 0.0]])
    e = relative_embedding(pos, c)
    assert torch.allclose(e[0], torch.tensor([0.0, 0.25]))
    assert torch.allclose(e[1], torch.tensor([-1.0, 0.0]))
    assert torch.allclose(e[2], torch.tensor([0.0, 5.0]))  # clipped at ±5


def _objects(n_obj, seed=0):
    rng = np.random.default_rng(seed)
    img = synthetic_image()
    h, w = img.shape[:2]
    P, C, pos = [], [], []
    for i in range(n_obj):
        sig = [1.0, 4.0, 12.0, 40.0][i % 4]
        mu = np.array([60 + 50 * i % 200, 80 + 30 * i % 120], float)
        p, c = crop_patches(img, mu, sig, allocation(sig, n=96), rng)
        P.append(p)
        C.append(c)
        pos.append(position(mu, sig, sig * 1.5, 0.6, 0.8, w, h))
    return P, C, np.stack(pos)


def test_object_major_index():
    counts = np.array([[2, 0, 1], [1, 3, 0]])
    dest, lens = object_major_index(counts, 2)
    assert lens.tolist() == [5, 6]
    # size-major order: s0:(o0,o0,o1) s1:(o1,o1,o1) s2:(o0) regs:(o0,o0,o1,o1)
    assert dest.tolist() == [0, 1, 5, 6, 7, 8, 2, 3, 4, 9, 10]


@pytest.mark.parametrize("kernel", ["loop", "mask"])
def test_packed_batch_equals_per_object(kernel):
    torch.manual_seed(0)
    m = flip.create_model("flip-tiny").eval()
    P, C, pos = _objects(4)
    rng = np.random.default_rng(1)
    qs = [torch.from_numpy((pos[i, :2] + rng.normal(size=(50 + 10 * i, 2)) * 0.2).astype(np.float32)) for i in range(4)]
    with torch.inference_mode():
        packed = m(TokenBatch.from_objects(P, C, pos, SIZES), torch.cat(qs), [len(q) for q in qs], kernel=kernel)
        single = torch.cat([m(TokenBatch.from_objects([P[i]], [C[i]], pos[i:i + 1], SIZES), qs[i]) for i in range(4)])
    assert torch.allclose(packed, single, atol=1e-4, rtol=1e-4)


def test_attention_modes_agree():
    torch.manual_seed(0)
    q, k, v = torch.randn(30, 32), torch.randn(25, 32), torch.randn(25, 32)
    a = packed_attention(q, k, v, 4, [10, 0, 20], [5, 8, 12], "loop")
    b = packed_attention(q, k, v, 4, [10, 0, 20], [5, 8, 12], "mask")
    c = packed_attention(q, k, v, 4, [10, 0, 20], [5, 8, 12], "math")
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
    # segment isolation: changing object 0's keys leaves object 2's outputs unchanged
    k2 = k.clone()
    k2[:5] += 10
    assert torch.allclose(packed_attention(q, k2, v, 4, [10, 0, 20], [5, 8, 12])[10:], a[10:], atol=1e-6)


def test_kv_cache_equals_uncached():
    """Cached decode == the decoder computed from scratch (K/V from the encoder output for every query chunk)."""
    torch.manual_seed(0)
    m = flip.create_model("flip-tiny").eval()
    P, C, pos = _objects(1)
    batch = TokenBatch.from_objects(P, C, pos, SIZES)
    coords = torch.from_numpy((pos[0, :2] + np.random.default_rng(2).normal(size=(300, 2)) * 0.3).astype(np.float32))
    with torch.inference_mode():
        cache = m.encode(batch)
        cached = torch.cat([m.decode(cache, coords[i:i + 100], [100]) for i in range(0, 300, 100)])
        # uncached reference: straight module calls, explicit softmax attention
        x, e, _ = m.sparsify(batch)
        for layer in m.layers:
            att = layer.attention
            qq = att.q(x) + att.query(e)
            kk = att.k(x) + att.key(e)
            vv = att.v(x) + att.value(e)
            x = x + att.out(packed_attention(qq, kk, vv, att.heads, [len(x)], [len(x)], "math")) * att.alpha
            x = x + layer.mlp(x) * layer.alpha
        dec = m.mask_extractor
        x = x + dec.preprocess(x)
        a = dec.attention
        kk = a.k_mlp(torch.cat((a.k(x), a.key(e)), 1))
        vv = a.v(x) + a.value(e)
        qq = a.query(relative_embedding(batch.positions, coords))
        o = a.out(packed_attention(qq, kk, vv, a.heads, [300], [len(x)], "math"))
        ref = dec.to_mask(o + dec.postprocess(o)).squeeze(-1)
    assert torch.allclose(cached, ref, atol=1e-4, rtol=1e-4)
    k1, v1 = cache.onnx_layout(m.cfg.num_heads)
    assert k1.shape == (1, 4, len(x), 16)


def test_registers_only_and_empty_levels():
    m = flip.create_model("flip-tiny").eval()
    empty = [np.zeros((0, p, p, 3), np.uint8) for p in SIZES]
    ec = [np.zeros((0, 2), np.float32) for _ in SIZES]
    P, C, pos = _objects(1)
    with torch.inference_mode():
        out = m(TokenBatch.from_objects([empty, P[0]], [ec, C[0]], np.stack([pos[0], pos[0]]), SIZES),
                torch.zeros(6, 2), [3, 3])
    assert torch.isfinite(out).all()


def test_initial_pos_emb_ablation():
    m = flip.create_model("flip-tiny", pos_emb_all_layers=False).eval()
    assert m.layers[0].attention.with_position and not m.layers[1].attention.with_position
    P, C, pos = _objects(2)
    with torch.inference_mode():
        out = m(TokenBatch.from_objects(P, C, pos, SIZES), torch.zeros(4, 2), [2, 2])
    assert out.shape == (4,) and torch.isfinite(out).all()
    assert get_config("flip-tiny").pos_emb_all_layers


def test_training_mode_backward():
    m = flip.create_model("flip-tiny")
    P, C, pos = _objects(2)
    out = m(TokenBatch.from_objects(P, C, pos, SIZES), torch.zeros(4, 2), [2, 2])
    out.sum().backward()
    assert m.sparsify.registers.grad is not None and m.layers[0].attention.query[0].weight.grad is not None
    assert isinstance(m, FLIP) and KVCache
