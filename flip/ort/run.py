"""Execution of the project's FLIP in onnxruntime, one object per graph run (docs/speed.md).

Why: a small object costs FLIP ~100 torch ops per encoder layer stack and per decoder call, each with 5-15 µs of
dispatch overhead; onnxruntime runs a fused graph at ~1-2 µs per node. So for the short sequences of FLIP (≤ 520 tokens
per object) and small query sets, the model that is loaded (the project's modules and whatever weights they hold) is
exported (graphs.py) and run in onnxruntime with full graph optimisation (sessions.py).
Here: the decoder's run sizes and thread split, and encode / encode_objects / decode with the same meaning as FLIP's
torch methods of those names. Who runs which backend is decided once, by the caller (flip.ort.select_backend).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..modeling.decoder import KVCache
from .graphs import flatten_patches, flatten_sampled, whitening
from .sessions import Sessions, sessions

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


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.numpy() if t.device.type == "cpu" and not t.requires_grad else t.detach().cpu().numpy()


def _object_feeds(sess, flat, coords, mu, w) -> dict:
    """The encoder graph's feeds for one object: flattened patches and coordinates per size, whitening μ (1, 2), W."""
    feeds = dict(zip(sess.patch_names, flat))
    feeds.update(zip(sess.coord_names, coords))
    feeds["mu"], feeds["whiten"] = mu, w
    return feeds


@dataclass
class OrtKV(KVCache):
    """KVCache from the encoder graph, with what the decoder graph of the same weights needs: its sessions (no
    second check of every parameter) and the objects' whitening (μ, W)."""

    sessions: Sessions | None = field(default=None, repr=False)
    whitening: tuple | None = field(default=None, repr=False)


def _kv_cache(model, sess, k, v, counts, positions, whitening_) -> OrtKV:
    return OrtKV(torch.from_numpy(k), torch.from_numpy(v), counts.sum(1) + model.cfg.num_registers, positions,
                 sessions=sess, whitening=whitening_)


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


def encode_objects(model, patches, coords, positions, workers: int = 1) -> OrtKV:
    """encode() of sampler output (as FLIP.encode_objects): patches[b][s], coords[b][s] per object b and patch size s,
    positions (B, 6). One object of uint8 sampler arrays goes straight from the sampler to the graph."""
    if len(patches) == 1 and len(patches[0]) == len(model.patch_sizes) \
            and all(isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 4 for p in patches[0]):
        return encode_sampled(model, patches[0], coords[0], positions[0])
    from ..modeling.packing import TokenBatch

    device = model.sparsify.registers.device
    return encode(model, TokenBatch.from_objects(patches, coords, positions, model.patch_sizes, device), workers)


def decode(model, cache, coords: torch.Tensor, q_lens, workers: int = 1, min_parallel: int | None = None,
           chunk: int | None = None) -> torch.Tensor:
    """Logits (Σq,) through the decoder graph: per object, in runs of ≤ chunk queries (default: decoder_chunk of the
    object's key count); from the work of ORT_MIN_PARALLEL_QUERIES queries at ORT_REFERENCE_KEYS keys on (or from
    min_parallel queries, when given), the runs go to `workers` threads (flip.runtime.parallel_map; each run on one
    onnxruntime thread)."""
    sess = (getattr(cache, "sessions", None) or sessions(model)).decoder
    q = _numpy(coords).astype(np.float32, copy=False)
    k, v = _numpy(cache.k), _numpy(cache.v)
    mu, w = getattr(cache, "whitening", None) or whitening(_numpy(cache.positions))
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
