"""Primitive ops of the FLIP modules, with an optional onnxruntime-order mode for bit-level parity.

Why: the pixel predictor's attention scores reach ~5000, so a relative error of 1e-7 anywhere upstream of the keys
moves softmax weights by ~1e-3; torch (MKL) and onnxruntime (MLAS) round differently and their logits differ by up
to ~4e-3. Measured per node on the authors' graph (ORT 1.32, x86-64, ORT_DISABLE_ALL), MLAS computes
  * Gemm / MatMul: C[i,j] = bias + one fp32 FMA chain over k = 0…K−1, K split in blocks of 256 whose partial sums
    are added to C (bit-exact for every Gemm and the QKᵀ MatMul of the graph);
  * Sigmoid: Eigen's rational approximation p(x)/q(x) + 0.5 with FMA (bit-exact on every Sigmoid node).
`ort_order()` makes the model compute these two exactly that way (FMA emulated in fp64: a·b is exact in fp64, one
rounding to fp32; double rounding is possible but vanishingly rare). Softmax and LayerNorm stay torch's (MLAS'
versions differ by ≤ 1 ulp and are not needed to reach ≤ 1e-3 on the logits).
It is slow (one fp64 op per k): meant for parity checks, never for inference.

Default (fast_path(): no autograd, not ort_order): LayerNorm affines folded into one QKV matmul, the decoder tail folded
to two vectors, large CPU products through oneDNN, decoder attention through oneDNN with denormals flushed. Its logits
differ from onnxruntime by up to ~3.6e-3 (the same order as torch's plain kernels); with autograd (training) the plain
module graph runs.
"""
from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F
from torch import nn

_state = threading.local()
MLAS_K_BLOCK = 256

# MLAS logistic constants (Eigen's): clamp range, numerator α9…α1, denominator β10…β0.
_LOGISTIC_RANGE = 18.0
_ALPHA = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03, 2.48287947061529e-01)
_BETA = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
         1.16817656904453e-01, 9.93151921023180e-01)


def ort_order_enabled() -> bool:
    return getattr(_state, "ort", False)


@contextlib.contextmanager
def ort_order(enabled: bool = True):
    """Inside this block every Linear / MatMul / SiLU of FLIP follows onnxruntime's (MLAS) fp32 operation order."""
    prev = ort_order_enabled()
    _state.ort = enabled
    try:
        yield
    finally:
        _state.ort = prev


def _f32(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def _fma(a: torch.Tensor, b, c) -> torch.Tensor:
    """fp32 fused multiply-add: exact product and sum in fp64, one rounding to fp32."""
    return (a.double() * torch.as_tensor(b).double() + torch.as_tensor(c).double()).float()


def fma_matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a (..., M, K) @ b (..., K, N) as MLAS SGEMM: per K block of 256 one FMA chain from 0, added to C (= bias or 0)."""
    a64, b64 = a.double(), b.double()
    k_total = a.shape[-1]
    out = None if bias is None else bias.float()
    for k0 in range(0, k_total, MLAS_K_BLOCK):
        acc = None
        for k in range(k0, min(k_total, k0 + MLAS_K_BLOCK)):
            prod = a64[..., :, k:k + 1] * b64[..., k:k + 1, :]
            acc = prod.float() if acc is None else (prod + acc.double()).float()
        out = acc if out is None else out + acc
    if out is None:  # K == 0
        out = a.new_zeros(*a.shape[:-1], b.shape[-1])
    return out.expand(*a.shape[:-1], b.shape[-1]) if out.shape[:-1] != a.shape[:-1] else out


def mlas_sigmoid(x: torch.Tensor) -> torch.Tensor:
    x = x.float().clamp(-_LOGISTIC_RANGE, _LOGISTIC_RANGE)
    x2 = x * x
    p = _fma(x2, _f32(_ALPHA[0]), _f32(_ALPHA[1]))
    for c in _ALPHA[2:]:
        p = _fma(p, x2, _f32(c))
    p = p * x
    q = _fma(x2, _f32(_BETA[0]), _f32(_BETA[1]))
    for c in _BETA[2:]:
        q = _fma(q, x2, _f32(c))
    return (p / q + 0.5).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------ dispatching ops
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if ort_order_enabled():
        return fma_matmul(x, weight.t(), bias)
    return F.linear(x, weight, bias)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return fma_matmul(a, b) if ort_order_enabled() else torch.matmul(a, b)


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * mlas_sigmoid(x) if ort_order_enabled() else F.silu(x)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) whose product follows ort_order() when enabled, and uses
    oneDNN with a pre-packed weight for large inference products on CPU (see fast_linear)."""

    def forward(self, x):
        if fast_path():
            if not hasattr(self, "_packed"):
                self._packed = FoldCache()
            return fast_linear(x, self.weight, self.bias, self._packed)
        return linear(x, self.weight, self.bias)


class SiLU(nn.SiLU):
    def forward(self, x):
        return silu(x)


# ------------------------------------------------------------------------------------------------ inference folds
def fast_path() -> bool:
    """Folded-weight inference path: only without autograd (training needs the plain graph), outside ort_order() and
    outside plain_graph() (ONNX export traces plain torch ops, never oneDNN's)."""
    return not torch.is_grad_enabled() and not ort_order_enabled() and not getattr(_state, "plain", False)


@contextlib.contextmanager
def plain_graph():
    """Inside this block the modules run plain torch ops (no oneDNN calls, no weight caches): what ONNX export traces."""
    prev = getattr(_state, "plain", False)
    _state.plain = True
    try:
        yield
    finally:
        _state.plain = prev


class FoldCache:
    """Derived weights, rebuilt whenever a source parameter changes (in-place update, load, .to(device), deepcopy).
    The builder is passed at each call (never stored), so a deep-copied module never builds from the original."""

    def __init__(self):
        self.key = None
        self.value = None

    def get(self, params, build):
        # inference tensors carry no version counter (they cannot be updated outside inference mode)
        # (a .to(device) moves data_ptr, so the device need not be part of the key)
        key = tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in params)
        if key != self.key:
            with torch.no_grad():
                self.value = build()
            self.key = key
        return self.value


# On AMD CPUs MKL's sgemm runs well below the AVX-512 peak (~110 vs ~270 GFLOP/s on 1 thread for 4096×256×64);
# oneDNN's JIT kernels do not depend on the vendor. Its per-call overhead loses below ~1 M multiply-adds.
DNNL_MIN_MACS = 1 << 20
_dnnl = {"ok": None}


def _dnnl_available() -> bool:
    if _dnnl["ok"] is None:
        try:
            w = torch.randn(8, 4)
            y = torch.ops.mkldnn._linear_pointwise(torch.ones(3, 4), torch.ops.mkldnn._reorder_linear_weight(w, None),
                                                   None, "none", [], "")
            _dnnl["ok"] = bool(torch.allclose(y, torch.ones(3, 4) @ w.t(), atol=1e-5))
        except (AttributeError, RuntimeError):
            _dnnl["ok"] = False
    return _dnnl["ok"]


def pack_weight(weight: torch.Tensor):
    """oneDNN-packed copy of a Linear weight (out, in), or None when oneDNN is unavailable or not on CPU."""
    if not (weight.is_cpu and weight.dtype == torch.float32 and _dnnl_available()):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed) -> torch.Tensor:
    """x @ weightᵀ + bias: oneDNN with the packed weight for large CPU products, else torch's F.linear."""
    if packed is not None and x.is_cpu and x.dim() == 2 and x.shape[0] * weight.numel() >= DNNL_MIN_MACS:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")
    return F.linear(x, weight, bias)


def fast_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cache: FoldCache) -> torch.Tensor:
    """packed_linear with the packed weight kept in cache (weight must be a parameter, not a derived tensor)."""
    if x.shape[0] * weight.numel() < DNNL_MIN_MACS:
        return F.linear(x, weight, bias)
    return packed_linear(x, weight, bias, cache.get([weight], lambda: pack_weight(weight)))


def fold_layernorm_linears(norms, linears) -> tuple[torch.Tensor, torch.Tensor]:
    """[Linear_i(LN_i(x))]_i = LN₀(x) @ Wᵀ + b with LN₀ the affine-free norm: W_i = A_i·diag(γ_i), b_i = A_i β_i + a_i.
    Returns (W (ΣO, I), b) in Linear layout."""
    w = torch.cat([lin.weight * ln.weight[None, :] for ln, lin in zip(norms, linears)])
    b = torch.cat([lin.weight @ ln.bias + lin.bias for ln, lin in zip(norms, linears)])
    return w, b


_DENORMAL = torch.tensor([1e-39])


@contextlib.contextmanager
def flush_denormals(enabled: bool = True):
    """Flush denormals to zero inside the block (CPU, calling thread), then restore the previous mode.
    Why: the decoder's scores span ~1000, so most exp(s − max) underflow; denormal arithmetic is ~10× slower.
    Only values below 1.2e-38 change."""
    was = bool((_DENORMAL * 1.0).item() == 0.0)
    switch = enabled and not was
    if switch:
        switch = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if switch:
            torch.set_flush_denormal(False)


def packed_heads(k: torch.Tensor, v: torch.Tensor, heads: int):
    """Per head h: contiguous K_h (n, d) and V_hᵀ (d, n), so scores = Linear(q_h; K_h) and out = Linear(P; V_hᵀ).
    (oneDNN takes them unpacked at the same speed; a reorder would cost more than it saves at these sizes.)"""
    d = k.shape[1] // heads
    return [(k[:, h * d:(h + 1) * d].contiguous(), v[:, h * d:(h + 1) * d].t().contiguous()) for h in range(heads)]


DNNL_ATTENTION_BLOCK = 512  # query rows per score block: 512 × ~520 keys × 4 B ≈ 1 MB stays in L2


def dnnl_attention(q: torch.Tensor, packs, scale: float) -> torch.Tensor:
    """softmax(q_h K_hᵀ·scale) V_h for every head, q (n, H·d) → (n, H·d), with packed per-head K/V (packed_heads)."""
    n, c = q.shape
    d = c // len(packs)
    out = q.new_empty(n, c)
    linear = torch.ops.mkldnn._linear_pointwise
    for r in range(0, n, DNNL_ATTENTION_BLOCK):
        qs = q[r:r + DNNL_ATTENTION_BLOCK] * scale
        for h, (kp, vp) in enumerate(packs):
            s = torch.softmax(linear(qs[:, h * d:(h + 1) * d].contiguous(), kp, None, "none", [], ""), -1)
            out[r:r + qs.shape[0], h * d:(h + 1) * d] = linear(s, vp, None, "none", [], "")
    return out
