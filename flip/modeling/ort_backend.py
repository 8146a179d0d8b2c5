"""onnxruntime execution of the project's own FLIP for CPU inference (docs/speed.md).

Why: a small object costs FLIP ~100 torch ops per encoder layer stack and per decoder call, each with 5-15 µs of
dispatch overhead; onnxruntime runs a fused graph at ~1-2 µs per node. So for the short sequences of FLIP (≤ 520 tokens
per object) and small query sets, the model that is loaded (the project's modules and whatever weights they hold) is
exported with torch.onnx.export and run in onnxruntime with full graph optimisation.

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

Sessions: one intra-op thread, no spinning, sequential (flip/runtime.py: the thread budget goes to independent query
chunks through parallel_map; onnxruntime's run releases the GIL). Built once per model and weights (kept in memory,
rebuilt when any parameter changes), never written into the repository.
Choice per call (`use_for_encoder`, `use_for_decoder`): CPU, inference (no autograd), attention mode "auto", float32,
model.inference_backend / FLIP_INFERENCE_BACKEND ∈ {auto, onnxruntime, torch}; "auto" takes onnxruntime wherever it can
run the call (measured faster at every size, below).
"""
from __future__ import annotations

import io
import os
import threading
import warnings
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import numerics
from .position import CLIP, _stacked_weights

BACKENDS = ("auto", "onnxruntime", "torch")
SUPPORTED_PATCH_SIZES = (1, 2, 4, 8, 16)
OPSET = 17
# Measured on the real model, 1 thread (`scripts/bench_flip.py --decoder-sweep`; docs/speed.md): onnxruntime wins the
# encoder at every size FLIP produces (≤ 512 + registers tokens: ~4 vs 6-7 ms at ~500 tokens, 0.3 vs 1.7 ms at ~60) and
# the decoder at every key and query count (runs sized by decoder_chunk; onnxruntime / torch 0.54-0.72 from 91 to 520
# keys and 400 to 32768 queries). Before the decoder tail became a 2-D product torch's oneDNN attention won above
# 2048 queries with < 256 keys; that crossover is gone.
# Queries per decoder run: the H × run × T float32 scores go through softmax and P·V, so a run is sized to keep them
# within ~4 MB (cache) instead of main memory: µs per query at 500 keys by run length 256: 1.87, 512: 1.84,
# 1024: 1.84, 2048: 2.21, 4096: 2.26 (at 250 keys 1.42 / 1.41 / 1.41 / 1.44 / 1.61; at 88 keys flat, 1.07-1.10);
# per small ObjaScale object, A/B against an 8 MB budget: 4 MB 5-7 % faster at 1 thread, 1-11 % at 2.
ORT_SCORES_BYTES = 4 << 20
ORT_DECODER_CHUNK = 4096  # longest run
ORT_MIN_DECODER_CHUNK = 256


def decoder_chunk(keys: int, heads: int) -> int:
    """Queries per decoder run for an object with `keys` keys: as many as fit their scores in ORT_SCORES_BYTES,
    within [ORT_MIN_DECODER_CHUNK, ORT_DECODER_CHUNK]."""
    fit = ORT_SCORES_BYTES // max(1, 4 * heads * int(keys))
    return int(min(ORT_DECODER_CHUNK, max(ORT_MIN_DECODER_CHUNK, fit)))


# Thread budget > 1 (flip/runtime.py): the decoder's query runs go to parallel_map from ORT_MIN_PARALLEL_QUERIES queries
# of one call, in runs of ≥ ORT_MIN_PARALLEL_CHUNK (~4 per worker), both counted at ORT_REFERENCE_KEYS keys: a query
# costs about (ORT_QUERY_KEY_COST + keys) units (µs per query per run: 0.60 at 72 keys, 1.41 at 500), so an object
# with fewer keys needs proportionally more queries before a second thread pays for its hand-over.
# Measured at ~500 keys (per-object ratio to the authors' pipeline at 2 threads, A/B, load ~1-1.6): from 2048 queries
# 1.09-1.13, from 1024 0.97-1.08, from 512 0.98-1.10, from 256 0.95-1.02. Longer runs (parallel from 1024 queries,
# runs of ≥ 512) helped only with another busy process on the cores (hierarchical t(2)/t(1) 1.03 instead of 1.04-1.06)
# and made the tiny objects of the skimage set lose their second core.
ORT_MIN_PARALLEL_QUERIES = 256
ORT_MIN_PARALLEL_CHUNK = 128
ORT_REFERENCE_KEYS = 500
ORT_QUERY_KEY_COST = 240


def query_cost(keys: int) -> int:
    """Relative cost of one decoder query against `keys` keys (see ORT_QUERY_KEY_COST)."""
    return int(keys) + ORT_QUERY_KEY_COST


def backend_of(model) -> str:
    b = getattr(model, "inference_backend", None) or os.environ.get("FLIP_INFERENCE_BACKEND") or "auto"
    if b not in BACKENDS:
        raise ValueError(f"unknown FLIP inference backend {b!r}; choose one of {BACKENDS}")
    return b


_available: dict = {}


def available() -> bool:
    if "ok" not in _available:
        try:
            import onnxruntime  # noqa: F401
            _available["ok"] = True
        except ImportError:
            _available["ok"] = False
    return _available["ok"]


def supported(model, device: torch.device, mode: str) -> bool:
    """onnxruntime can run this call: CPU float32 inference, attention "auto", a patch-size set it knows."""
    if device.type != "cpu" or mode != "auto" or not numerics.fast_path():
        return False
    sizes_ok = model.__dict__.get("_ort_sizes_ok")  # fixed by the architecture: checked once per model
    if sizes_ok is None:
        sizes_ok = model.__dict__["_ort_sizes_ok"] = set(model.patch_sizes) <= set(SUPPORTED_PATCH_SIZES) and available()
    return sizes_ok and model.sparsify.registers.dtype == torch.float32


def use_for_encoder(model, device, mode: str) -> bool:
    b = backend_of(model)
    return b != "torch" and supported(model, device, mode)


def use_for_decoder(model, device, mode: str) -> bool:
    """The decoder takes onnxruntime wherever the encoder does (faster at every measured size, see above)."""
    return use_for_encoder(model, device, mode)


# ------------------------------------------------------------------------------------------------ export modules
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
        w1, b1, w2, b2, w3, b3 = (t.clone() for t in _stacked_weights(self.mlps))
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
        w, v, c = dec._fold_tail()
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


def export_encoder(model) -> bytes:
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


def export_decoder(model) -> bytes:
    c = model.cfg.channels
    with torch.no_grad():
        graph = DecoderGraph(_frozen_copy(model)).eval()
    mu, w = (torch.from_numpy(a[0]) for a in whitening(np.array([[0.0, 0.0, 0.2, 0.1, 0.8, 0.6]])))
    args = (torch.randn(20, c), torch.randn(20, c), mu, w, torch.rand(7, 2))
    return _export(graph, args, ["k", "v", "mu", "whiten", "coords"], ["logits"],
                   dict(k={0: "tokens"}, v={0: "tokens"}, coords={0: "queries"}, logits={0: "queries"}))


def session(onnx_bytes: bytes, optimize: bool = True, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


class _Runner:
    """session.run for feeds this module built itself: the compiled session's run directly, without the Python
    wrapper's per-call re-validation of input names (~10 µs a call; a small object's whole encoder is ~0.25 ms).
    Falls back to the public run when the binding does not expose it."""

    def __init__(self, sess):
        self.session = sess
        self.outputs = [o.name for o in sess.get_outputs()]
        inner = getattr(sess, "_sess", None)
        self._run = (lambda feeds: inner.run(self.outputs, feeds, None)) if inner is not None and hasattr(inner, "run") \
            else (lambda feeds: sess.run(self.outputs, feeds))

    def run(self, _outputs, feeds):
        return self._run(feeds)


class Sessions:
    """Encoder and decoder sessions of one model state, one onnxruntime thread each: no onnxruntime thread pool exists,
    so a process that forks after inference (DataLoader workers, multiprocessing) never inherits one (an intra-op pool
    made forked children hang at exit), and the thread budget goes to independent query runs (parallel_map)."""

    def __init__(self, model):
        self.patch_sizes = tuple(model.patch_sizes)
        self.patch_names = [f"patches_p{p}" for p in self.patch_sizes]
        self.coord_names = [f"coords_p{p}" for p in self.patch_sizes]
        self.encoder = _Runner(session(export_encoder(model)))
        self.decoder = _Runner(session(export_decoder(model)))


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _weights_key(params) -> tuple:
    """Changes whenever a parameter is updated in place (version counter) or the module moves (storage address).
    ~200 parameters: a few tens of µs, paid once per encode (the decoder reuses the encoder's sessions)."""
    try:
        return (params[0].data_ptr(),) + tuple([p._version for p in params])
    except RuntimeError:  # inference tensors carry no version counter (they cannot be updated in place)
        return tuple([p.data_ptr() for p in params])


def sessions(model) -> Sessions:
    """The model's onnxruntime sessions, exported on first use and again whenever a parameter changes.
    Kept beside the model (weak reference), never deep-copied or pickled with it, never written to disk."""
    with _cache_lock:
        entry = _cache.get(model)
        if entry is None:  # (listing the parameters of a module tree costs ~0.5 ms: once per model)
            entry = _cache[model] = [list(model.parameters()), None, None]
        key = _weights_key(entry[0])
        if entry[1] != key:
            with torch.inference_mode(False), torch.no_grad():
                entry[2] = Sessions(model)
            entry[1] = key
        return entry[2]


# ------------------------------------------------------------------------------------------------ execution
def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.numpy() if t.device.type == "cpu" and not t.requires_grad else t.detach().cpu().numpy()


def _object_feeds(sess, flat, coords, mu, w) -> dict:
    """The encoder graph's feeds for one object: flattened patches and coordinates per size, whitening μ (1, 2), W."""
    feeds = dict(zip(sess.patch_names, flat))
    feeds.update(zip(sess.coord_names, coords))
    feeds["mu"], feeds["whiten"] = mu, w
    return feeds


def _kv_cache(model, sess, k, v, counts, positions, whitening_):
    from .decoder import KVCache

    cache = KVCache(torch.from_numpy(k), torch.from_numpy(v), counts.sum(1) + model.cfg.num_registers, positions)
    cache.packed["ort"] = sess  # the decoder of the same weights: no second check of every parameter
    cache.packed["whitening"] = whitening_
    return cache


def encode(model, batch, workers: int = 1):
    """KVCache of a TokenBatch through the encoder graph, one object per run (same layout as FLIP.encode). One
    onnxruntime thread per run: one object's encoder is a dependent chain of ~110 nodes; an intra-op pool without
    spinning measured no faster (4.14 vs 4.15 ms at ~490 tokens, load 0.6), with spinning it made hierarchical FLIP
    at 2 threads slower than at 1 (18.5 vs 14.2 ms, two sessions' pools on two cores), and pools are not fork-safe.
    With workers > 1 several objects run at once (parallel_map)."""
    sess = sessions(model)
    counts = batch.counts
    nb = batch.num_objects
    flat = [flatten_patches(_numpy(p), ps) for p, ps in zip(batch.patches, sess.patch_sizes)]
    coords = [_numpy(c) for c in batch.coords]
    mu, w = whitening(_numpy(batch.positions))
    if nb == 1:  # (the common call: one object per predict)
        k, v = sess.encoder.run(None, _object_feeds(sess, flat, coords, mu[0], w[0]))
    else:
        starts = np.concatenate([np.zeros((1, counts.shape[1]), np.int64), np.cumsum(counts, 0)])

        def one(b):
            rows = [slice(starts[b, s], starts[b + 1, s]) for s in range(counts.shape[1])]
            return sess.encoder.run(None, _object_feeds(sess, [f[r] for f, r in zip(flat, rows)],
                                                        [c[r] for c, r in zip(coords, rows)], mu[b], w[b]))

        # objects are independent: with a thread budget > 1 they go to parallel_map (a work queue, no barrier)
        if workers > 1:
            from ..runtime import parallel_map

            kvs = parallel_map(one, range(nb), workers)
        else:
            kvs = [one(b) for b in range(nb)]
        k, v = np.concatenate([kv[0] for kv in kvs]), np.concatenate([kv[1] for kv in kvs])
    return _kv_cache(model, sess, k, v, counts, batch.positions, (mu, w))


def encode_sampled(model, patches, coords, position):
    """KVCache of one object straight from sampler output: patches[s] (n, p, p, 3) uint8, coords[s] (n, 2) float32
    (model units), position (6,) model-unit Gaussian. Same values as encode(model, TokenBatch.from_objects(...)),
    without the torch round trip (~0.1 ms of a small object's ~1 ms)."""
    sess = sessions(model)
    coords = [np.asarray(c, np.float32).reshape(-1, 2) for c in coords]
    for p, c, size in zip(patches, coords, sess.patch_sizes):
        if p.shape[0] != c.shape[0]:
            raise ValueError(f"patch size {size}: {p.shape[0]} patches but {c.shape[0]} coordinates")
    flat = [flatten_sampled(p, size) for p, size in zip(patches, sess.patch_sizes)]
    pos = np.asarray(position, np.float32).reshape(1, 6)
    mu, w = whitening(pos)
    k, v = sess.encoder.run(None, _object_feeds(sess, flat, coords, mu[0], w[0]))
    counts = np.array([[c.shape[0] for c in coords]], np.int64)
    return _kv_cache(model, sess, k, v, counts, torch.from_numpy(pos), (mu, w))


def decode(model, cache, coords: torch.Tensor, q_lens, workers: int = 1, min_parallel: int | None = None,
           chunk: int | None = None) -> torch.Tensor:
    """Logits (Σq,) through the decoder graph: per object, in runs of ≤ chunk queries (default: decoder_chunk of the
    object's key count); from the work of ORT_MIN_PARALLEL_QUERIES queries at ORT_REFERENCE_KEYS keys on (or from
    min_parallel queries, when given), the runs go to `workers` threads (flip.runtime.parallel_map; each run on one
    onnxruntime thread)."""
    sess = (cache.packed.get("ort") or sessions(model)).decoder
    q = _numpy(coords).astype(np.float32, copy=False)
    k, v = _numpy(cache.k), _numpy(cache.v)
    mu, w = cache.packed.get("whitening") or whitening(_numpy(cache.positions))
    heads = model.mask_extractor.attention.heads
    chunks = [chunk or decoder_chunk(n, heads) for n in cache.kv_lens]
    ref = query_cost(ORT_REFERENCE_KEYS)
    costs = [query_cost(n) for n in cache.kv_lens]
    work = sum(int(nq) * c for nq, c in zip(q_lens, costs))  # queries × cost units (ref units: one reference query)
    parallel = workers > 1 and (work >= ORT_MIN_PARALLEL_QUERIES * ref if min_parallel is None
                                else q.shape[0] >= min_parallel)
    if len(q_lens) == 1 and q.shape[0] <= chunks[0] and k.shape[0] and not parallel:  # (one object, one run)
        return torch.from_numpy(sess.run(None, {"k": k, "v": v, "mu": mu[0], "whiten": w[0], "coords": q})[0].reshape(-1))
    q_lens = np.asarray(q_lens, dtype=np.int64).reshape(-1)
    total = int(q_lens.sum())
    out = np.empty(total, np.float32)
    kv_off = np.concatenate([[0], np.cumsum(cache.kv_lens)])
    if parallel:  # about 4 runs per worker, so a descheduled worker costs at most one small run
        share = -(-work // (4 * workers))
        chunks = [min(c, max(-(-ORT_MIN_PARALLEL_CHUNK * ref // cost), -(-share // cost))) for c, cost in zip(chunks, costs)]
    items = []
    qa = 0
    for b, nq in enumerate(q_lens):
        nq = int(nq)
        for s in range(qa, qa + nq, chunks[b]):
            items.append((b, s, min(s + chunks[b], qa + nq)))
        qa += nq

    def run(item):
        b, s, e = item
        ka, kz = kv_off[b], kv_off[b + 1]
        if kz == ka:  # an object without tokens (never produced by encode): softmax over nothing
            out[s:e] = 0.0
            return
        out[s:e] = sess.run(None, {"k": k[ka:kz], "v": v[ka:kz], "mu": mu[b], "whiten": w[b], "coords": q[s:e]})[0].reshape(-1)

    if parallel and len(items) > 1:
        from ..runtime import parallel_map

        parallel_map(run, items, workers)
    else:
        for it in items:
            run(it)
    return torch.from_numpy(out)
