"""The graphs onnxruntime runs: graph-friendly forms of the project's FLIP modules, exported with torch.onnx.

Two graphs per model, one object per run (hierarchical decoding calls the decoder once per level):
  encoder  per patch size: patches flattened as the first Linear of that patch embedding reads them
           (p ≤ 4: (n, 3·p·p) channel-major; p = 8, 16: (n, 16, 3·s·s), the 4×4 grid of s×s sub-patches cell by cell),
           coords (n, 2); the object's whitening μ (1, 2), W (2, 2) (see `whitening`)  →  k, v (T, C): the pixel
           decoder's keys/values (registers last, as FLIP.encode).
           An empty patch size is a zero-row input. No Reshape touches a patch-count axis (the 8/16 embeddings' cells
           are flattened by a Flatten node), so graph optimisation can stay on: onnxruntime's
           optimiser rewrites a Reshape of the authors' graph so that it fails on empty sizes (reference README).
  decoder  k, v (T, C), μ, W, coords (m, 2)  →  logits (m,).
Folded at export (exact algebra, as the torch fast path): LayerNorm affines into the QKV product, α scalars into the
products they scale, the decoder tail (256→64→1) into two column products ((m, C)·(C, 1): see DecoderGraph).
The graphs read the model only through its modules' public parts (stacked_weights, PixelDecoder.fold_tail).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import numerics
from ..modeling.position import CLIP, stacked_weights

SUPPORTED_PATCH_SIZES = (1, 2, 4, 8, 16)
OPSET = 17


# Graph-friendly forms of the same maths (fewer nodes: at ~60 tokens onnxruntime pays ~1-2 µs per node):
# constant head reshapes instead of shape arithmetic, the Gaussian-relative embedding as (c − μ)·W with W computed once
# per object in NumPy (whitening), stacked position-MLP outputs taken by index.
def whitening(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 6) model-unit Gaussians → μ (B, 1, 2) and W (B, 2, 2) with relative_embedding(c) = clip((c − μ)·W, ±5)
    (the rotation normalised and divided by the principal stds as in position.relative_embedding, float32)."""
    p = np.asarray(positions, np.float32).reshape(-1, 6)
    a, b = p[:, 4], p[:, 5]
    scale = np.maximum(np.sqrt(a * a + b * b), np.float32(1e-6))
    a, b = a / scale, b / scale
    s1, s2 = np.maximum(p[:, 2], np.float32(1e-8)), np.maximum(p[:, 3], np.float32(1e-8))
    w = np.empty((len(p), 2, 2), np.float32)
    w[:, 0, 0], w[:, 0, 1], w[:, 1, 0], w[:, 1, 1] = a / s1, b / s2, -b / s1, a / s2
    return np.ascontiguousarray(p[:, None, 0:2]), w


def _relative(coords, mu, w):
    return ((coords - mu) @ w).clamp(-CLIP, CLIP)


def _attend(q, k, v, heads: int, channels: int, scaled: bool = False):
    """softmax(q_h k_hᵀ/√d) v_h for every head, one sequence, with constant reshapes (scaled: q already carries 1/√d)."""
    d = channels // heads
    qh = (q if scaled else q * d ** -0.5).reshape(-1, heads, d).transpose(0, 1)  # (H, m, d)
    kh = k.reshape(-1, heads, d).permute(1, 2, 0)  # (H, d, n)
    vh = v.reshape(-1, heads, d).transpose(0, 1)  # (H, n, d)
    return torch.softmax(qh @ kh, dim=-1).matmul(vh).transpose(0, 1).reshape(-1, channels)


def _first_linear(emb):
    """(weight, bias, rest) of one patch embedding for flattened input: p ≤ 4 as is; p = 8/16: the sub-patch Linear
    on the (n, 16, 3·s·s) cells, flattened to (n, 16·out) by the graph (Flatten: no Reshape of the patch-count axis).
    (A block-diagonal Linear on the flat patch gave the same values at 16× the multiply-adds: 23 of ~390 µs of a
    64-token encoder run, 189 of ~4000 at 490 tokens.)"""
    layers = emb.layers
    if emb.patch_size <= 4:
        return layers[1].weight, layers[1].bias, nn.Sequential(*layers[2:])
    return layers[1].weight, layers[1].bias, nn.Sequential(*layers[3:])


def graph_patch_shape(n: int, patch_size: int) -> tuple:
    """The encoder graph's input shape for n patches of one size: (n, 3·p·p), or (n, 16, 3·s·s) cells for p = 8, 16."""
    if patch_size <= 4:
        return (n, 3 * patch_size * patch_size)
    s = patch_size // 4
    return (n, 16, 3 * s * s)


def flatten_patches(p: np.ndarray, patch_size: int) -> np.ndarray:
    """(n, 3, p, p) float → the encoder graph's layout for that size (see the module docstring)."""
    n = p.shape[0]
    if patch_size > 4:  # (n, 3, gy, s, gx, s) → (n, gy, gx, 3, s, s): cell by cell, each cell channel-major
        s = patch_size // 4
        p = p.reshape(n, 3, 4, s, 4, s).transpose(0, 2, 4, 1, 3, 5)
    return np.ascontiguousarray(p.reshape(graph_patch_shape(n, patch_size)), dtype=np.float32)


def flatten_sampled(p: np.ndarray, patch_size: int) -> np.ndarray:
    """Sampler output (n, p, p, 3) uint8 HWC → the encoder graph's float32 layout, the same values as
    flatten_patches(TokenBatch patches): float32(u8) / float32(255), one copy per size."""
    n = p.shape[0]
    if n == 0:
        return np.empty(graph_patch_shape(0, patch_size), np.float32)
    if patch_size <= 4:
        view = p.transpose(0, 3, 1, 2)  # (n, 3, p, p)
    else:  # (n, 4, s, 4, s, 3) → (n, gy, gx, 3, s, s): cell by cell, each cell channel-major
        s = patch_size // 4
        view = p.reshape(n, 4, s, 4, s, 3).transpose(0, 1, 3, 5, 2, 4)
    out = np.empty(view.shape, np.float32)
    np.divide(view, np.float32(255.0), out=out, dtype=np.float32)
    return out.reshape(graph_patch_shape(n, patch_size))


class EncoderGraph(nn.Module):
    """One object: flattened patches + coords per size, whitening μ (1, 2), W (2, 2) → decoder k, v (T, C)."""

    def __init__(self, model):
        super().__init__()
        tok = model.sparsify
        self.num_sizes = len(tok.patch_sizes)
        self.channels = model.cfg.channels
        firsts = [_first_linear(e) for e in tok.patch_embeddings]
        self.first_w = nn.ParameterList([nn.Parameter(w.detach().clone()) for w, _, _ in firsts])
        self.first_b = nn.ParameterList([nn.Parameter(b.detach().clone()) for _, b, _ in firsts])
        self.rests = nn.ModuleList([r for _, _, r in firsts])
        self.registers = tok.registers
        self.register_embeddings = tok.register_embeddings
        dec = model.mask_extractor
        self.mlps = [m for layer in model.layers for m in layer.attention.position_mlps()] + [dec.attention.key,
                                                                                             dec.attention.value]
        # all position MLPs (≥ 2: the decoder's key and value) stacked, as run_position_mlps does
        w1, b1, w2, b2, w3, b3 = (t.clone() for t in stacked_weights(self.mlps))
        self.layers = []
        c = self.channels
        i = 0  # this layer's query position MLP in the stack (the first of its three)
        for layer in model.layers:
            att = layer.attention
            w, b = numerics.fold_layernorm_linears([att.q[0], att.k[0], att.v[0]], [att.q[1], att.k[1], att.v[1]])
            # the scores' 1/√d folded into the query rows and the query position MLP: no Mul node
            q_scale = (c // att.heads) ** -0.5
            w, b = w.clone(), b.clone()
            w[:c] *= q_scale
            b[:c] *= q_scale
            if att.with_position:
                w3[i] *= q_scale
                b3[i] *= q_scale
                i += 3
            a_out = att.alpha
            ffb = layer.mlp
            a_ffb = ffb.alpha * layer.alpha
            self.layers.append(dict(qkv_w=w, qkv_b=b, eps=att.q[0].eps, heads=att.heads, pos=att.with_position,
                                    out_w=att.out[1].weight * a_out, out_b=att.out[1].bias * a_out,
                                    norm=ffb.norm, w1=ffb.weight1, b1=ffb.bias1, w2=ffb.weight2 * a_ffb,
                                    b2=ffb.bias2 * a_ffb))
        self.stacked = (w1, b1, w2, b2, w3, b3)
        pre = dec.preprocess
        self.pre = dict(norm=pre.norm, w1=pre.weight1, b1=pre.bias1, w2=pre.weight2 * pre.alpha, b2=pre.bias2 * pre.alpha)
        self.kv = dec.attention

    def _positions(self, e):
        """run_position_mlps with its stacked weights: one product for all first layers, two batched products.
        Returns (M, n, C)."""
        w1, b1, w2, b2, w3, b3 = self.stacked
        m, hid = w2.shape[0], w2.shape[1]
        h = F.silu(e @ w1 + b1)  # (n, M·h)
        h = h.reshape(-1, m, hid).transpose(0, 1)  # (M, n, h)
        return F.silu(h @ w2 + b2) @ w3 + b3  # (M, n, C)

    def _ffb(self, x, f):
        h = F.silu(F.linear(F.layer_norm(x, (self.channels,), f["norm"].weight, f["norm"].bias, f["norm"].eps), f["w1"], f["b1"]))
        return F.linear(h, f["w2"], f["b2"])

    def forward(self, *inputs):
        s = self.num_sizes
        patches, coords, mu, w = inputs[:s], inputs[s:2 * s], inputs[2 * s], inputs[2 * s + 1]
        feats = []
        for p, w1, b1, rest in zip(patches, self.first_w, self.first_b, self.rests):
            h = F.linear(p, w1, b1)
            feats.append(rest(h.flatten(1) if h.dim() == 3 else h))  # p = 8, 16: (n, 16, out) cells → (n, 16·out)
        x = torch.cat(feats + [self.registers])
        e = torch.cat([_relative(torch.cat(list(coords)), mu, w), self.register_embeddings])
        c = self.channels
        pos = self._positions(e)  # (M, n, C)
        i = 0
        for L in self.layers:
            xn = F.layer_norm(x, (c,), None, None, L["eps"])
            qkv = F.linear(xn, L["qkv_w"], L["qkv_b"])
            if L["pos"]:  # this layer's three position outputs as one (n, 3C) addend
                qkv = qkv + pos[i:i + 3].transpose(0, 1).reshape(-1, 3 * c)
                i += 3
            o = _attend(qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:], L["heads"], c, scaled=True)
            x = x + F.linear(o, L["out_w"], L["out_b"])
            x = x + self._ffb(x, L)
        x = x + self._ffb(x, self.pre)
        return self.kv.keys_values(x, pos[-2], pos[-1])


class DecoderGraph(nn.Module):
    """One object: k, v (T, C), whitening μ (1, 2), W (2, 2), query coords (m, 2) → logits (m,)."""

    def __init__(self, model):
        super().__init__()
        dec = model.mask_extractor
        self.channels = model.cfg.channels
        self.att = dec.attention
        post = dec.postprocess
        w, v, c = dec.fold_tail()
        w1 = post.weight1 * post.norm.weight[None, :]
        b1 = post.weight1 @ post.norm.bias + post.bias1
        scale = (self.channels // self.att.heads) ** -0.5
        last = self.att.query[4]
        # the tail's two dot products as (m, C)·(C, 1) products: onnxruntime's MatMul with a 1-D right operand took
        # 44 % of the whole decoder run at 72 keys × 417 queries (0.23 of 0.52 ms; 2-D: 0.45 → 0.25 ms per run)
        self.tail = dict(eps=post.norm.eps, w1=w1, b1=b1, w=w[:, None].contiguous(), v=v[:, None].contiguous(),
                         c=c, q_w=last.weight * scale, q_b=last.bias * scale)

    def forward(self, k, v, mu, w, coords):
        att, t = self.att, self.tail
        e = _relative(coords, mu, w)
        h = F.silu(att.query[2](F.silu(att.query[0](e))))
        q = F.linear(h, t["q_w"], t["q_b"])  # the query MLP's last layer with the 1/√d of the scores folded in
        o = att.out(_attend(q, k, v, att.heads, self.channels, scaled=True))
        h = F.silu(F.linear(F.layer_norm(o, (self.channels,), None, None, t["eps"]), t["w1"], t["b1"]))
        return (o @ t["w"] + h @ t["v"] + t["c"]).squeeze(1)  # o·w + h·v + c


def _frozen_copy(model):
    """A CPU float32 copy of the model without autograd (its tensors enter the graph as constants). A fresh module with
    the weights, not a deepcopy: the model's weight caches may hold oneDNN tensors that cannot be copied."""
    m = type(model)(model.cfg)
    m.load_state_dict({k: v.detach().cpu().float() for k, v in model.state_dict().items()})
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _export(module: nn.Module, args: tuple, input_names, output_names, dynamic_axes) -> bytes:
    buf = io.BytesIO()
    for p in module.parameters():  # folded weights become graph constants; the model's own parameters stay untouched
        p.requires_grad_(False)
    with numerics.plain_graph(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic; the graphs are checked by the parity tests
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, do_constant_folding=True)
    return buf.getvalue()


def encoder_onnx(model) -> bytes:
    sizes = model.patch_sizes
    with torch.no_grad():
        graph = EncoderGraph(_frozen_copy(model)).eval()
    rng = torch.Generator().manual_seed(0)
    patches = tuple(torch.rand(graph_patch_shape(3, p), generator=rng) for p in sizes)
    coords = tuple(torch.rand(3, 2, generator=rng) for _ in sizes)
    mu, w = (torch.from_numpy(a[0]) for a in whitening(np.array([[0.0, 0.0, 0.2, 0.1, 0.8, 0.6]])))
    names = [f"patches_p{p}" for p in sizes] + [f"coords_p{p}" for p in sizes] + ["mu", "whiten"]
    dyn = {n: {0: f"n{p}"} for p, n in zip(sizes * 2, names[:-2])}
    dyn.update(k={0: "tokens"}, v={0: "tokens"})
    return _export(graph, patches + coords + (mu, w), names, ["k", "v"], dyn)


def decoder_onnx(model) -> bytes:
    c = model.cfg.channels
    with torch.no_grad():
        graph = DecoderGraph(_frozen_copy(model)).eval()
    mu, w = (torch.from_numpy(a[0]) for a in whitening(np.array([[0.0, 0.0, 0.2, 0.1, 0.8, 0.6]])))
    args = (torch.randn(20, c), torch.randn(20, c), mu, w, torch.rand(7, 2))
    return _export(graph, args, ["k", "v", "mu", "whiten", "coords"], ["logits"],
                   dict(k={0: "tokens"}, v={0: "tokens"}, coords={0: "queries"}, logits={0: "queries"}))

