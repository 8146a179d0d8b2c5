"""onnxruntime sessions of one model state: built on first use, kept beside the model, rebuilt when a weight changes.

Sessions: one intra-op thread, no spinning, sequential (flip/runtime.py: the thread budget goes to independent query
chunks through parallel_map; onnxruntime's run releases the GIL). Built once per model and weights (kept in memory,
rebuilt when any parameter changes), never written into the repository.
"""
from __future__ import annotations

import threading
import weakref

import torch

from . import graphs


def new_session(onnx_bytes: bytes, optimize: bool = True, threads: int = 1):
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


class SessionCall:
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
        self.encoder = SessionCall(new_session(graphs.encoder_onnx(model)))
        self.decoder = SessionCall(new_session(graphs.decoder_onnx(model)))


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
