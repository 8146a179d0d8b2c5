"""The onnxruntime runtime (flip/ort/): the project's own encoder/decoder exported and run in onnxruntime
must give the torch path's keys/values and logits, on every object size, with empty patch sizes, in batches."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from flip.modeling import FLIP, FlipConfig, TokenBatch  # noqa: E402
from flip.ort import run as ort_run, select_backend, sessions as ort_sessions  # noqa: E402
from tests import reference  # noqa: E402
from tests.flip_testutil import crop_patches, position, synthetic_image  # noqa: E402

# per patch size (1, 2, 4, 8, 16): a tiny object (no 8/16 patches), a mid one, a full 512-token one, only large patches
COUNTS = ([40, 12, 6, 0, 0], [150, 60, 30, 8, 0], [300, 120, 60, 24, 8], [0, 0, 0, 5, 3])


def _model(seed=0):
    torch.manual_seed(seed)
    model = FLIP(FlipConfig()).eval()
    with torch.no_grad():  # trained-like scale: the decoder's scores reach the hundreds
        for name, p in model.named_parameters():
            if "alpha" not in name:
                p.mul_(2.0)
    return model


def _batch(counts_list, seed=0):
    img = synthetic_image()
    h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    patches, coords, positions = [], [], []
    for i, counts in enumerate(counts_list):
        mu = np.array([100.0 + 40 * i, 90.0 + 20 * i])
        P, C = crop_patches(img, mu, 6.0 + 8 * i, counts, rng)
        patches.append(P)
        coords.append(C)
        positions.append(position(mu, 6.0 + 8 * i, 4.0 + 5 * i, 0.8, 0.6, w, h))
    return TokenBatch.from_objects(patches, coords, np.stack(positions), (1, 2, 4, 8, 16))


def _run(fn):
    with torch.inference_mode():
        return fn()


@pytest.mark.parametrize("counts", COUNTS)
def test_encoder_and_decoder_match_torch_per_object_size(counts):
    model = _model()
    batch = _batch([counts])
    coords = torch.rand(3000, 2) * 0.6 - 0.3
    for chunk_queries in (700, 3000):  # below and above the decoder crossover
        q = coords[:chunk_queries]
        ref_cache = _run(lambda: model.encode(batch))
        ort_cache = _run(lambda: ort_run.encode(model, batch))
        assert isinstance(ort_cache, ort_run.OrtKV) and ort_cache.kv_lens.tolist() == ref_cache.kv_lens.tolist()
        assert torch.allclose(ort_cache.k, ref_cache.k, atol=1e-3, rtol=1e-4)
        assert torch.allclose(ort_cache.v, ref_cache.v, atol=1e-3, rtol=1e-4)
        ref = _run(lambda: model.decode(ref_cache, q, [chunk_queries]))
        ours = _run(lambda: ort_run.decode(model, ref_cache, q, [chunk_queries]))
        assert ours.shape == ref.shape and torch.isfinite(ours).all()
        assert torch.allclose(ours, ref, atol=2e-3, rtol=1e-4), float((ours - ref).abs().max())
        sure = ref.abs() > 0.01
        assert torch.equal(ours[sure] > 0, ref[sure] > 0)


def test_batch_of_objects_with_different_empty_sizes_matches_torch():
    model = _model(1)
    batch = _batch(list(COUNTS), seed=3)
    q_lens = [500, 0, 1200, 300]
    coords = torch.rand(sum(q_lens), 2) * 0.8 - 0.4
    ref = _run(lambda: model.decode(model.encode(batch), coords, q_lens))
    ours = _run(lambda: ort_run.decode(model, ort_run.encode(model, batch), coords, q_lens))
    assert torch.allclose(ours, ref, atol=2e-3, rtol=1e-4)
    # query runs on two threads (work queue) give the same logits as one thread
    cache = _run(lambda: ort_run.encode(model, batch))
    two = _run(lambda: ort_run.decode(model, cache, coords, q_lens, workers=2, min_parallel=1,
                                                                 chunk=256))
    one = _run(lambda: ort_run.decode(model, cache, coords, q_lens, workers=1))
    assert torch.equal(one, two)


def test_sessions_follow_the_weights():
    model = _model(2)
    batch = _batch([COUNTS[1]])
    q = torch.rand(400, 2) * 0.4 - 0.2
    before = _run(lambda: ort_run.decode(model, ort_run.encode(model, batch), q, [400]))
    first = ort_sessions.sessions(model)
    assert ort_sessions.sessions(model) is first  # cached
    with torch.no_grad():
        model.mask_extractor.to_mask.bias.add_(1.5)  # in-place update: a new export
    after = _run(lambda: ort_run.decode(model, ort_run.encode(model, batch), q, [400]))
    assert ort_sessions.sessions(model) is not first
    assert torch.allclose(after, before + 1.5, atol=1e-3)


def test_backend_choice_is_the_callers():
    model = _model()
    cpu = torch.device("cpu")
    assert select_backend("auto", model, cpu) == "onnxruntime"
    assert select_backend("auto", model, cpu, "loop") == "torch"  # an explicit torch attention kernel is honoured
    assert select_backend("torch", model, cpu) == "torch"
    assert select_backend("onnxruntime", model, cpu) == "onnxruntime"
    with pytest.raises(ValueError, match="kernel"):
        select_backend("onnxruntime", model, cpu, "loop")
    with pytest.raises(ValueError, match="unknown FLIP backend"):
        select_backend("cuda-graphs", model, cpu)
    assert not hasattr(model, "inference_backend")  # no model attribute decides it


def test_predictor_masks_match_torch_path():
    from flip.predictor import FlipPredictor
    from segcore.prompt import Prompt

    model = _model(4)
    img = synthetic_image()
    with torch.inference_mode():  # centre the logits, so that the masks hold both signs (random weights)
        q = torch.rand(2000, 2) * 0.6 - 0.3
        median = float(_run(lambda: model(_batch([COUNTS[2]]), q)).median())
    with torch.no_grad():
        model.mask_extractor.to_mask.bias.sub_(median)
    masks = {}
    for backend in ("torch", "onnxruntime"):
        for mode in ("5sigma", "hierarchical"):
            pred = FlipPredictor(model, mode=mode, device="cpu", seed=5, threads=1, backend=backend)
            assert pred.backend == backend
            pred.set_image(img)
            prompts = [Prompt.from_mask(m) for m in _object_masks(img.shape[:2])]
            masks[backend, mode] = pred.predict(prompts)
    assert sum(int(m.sum()) > 50 for m in masks["torch", "5sigma"]) >= 2  # a comparison of non-trivial masks
    for mode in ("5sigma", "hierarchical"):
        for a, b in zip(masks["torch", mode], masks["onnxruntime", mode]):
            # logits within ~1e-3 of each other: only pixels with |logit| < ~0.01 may flip
            assert np.mean(a != b) < 1e-3


def _object_masks(shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return [((xx - 150) / 60.0) ** 2 + ((yy - 120) / 35.0) ** 2 < 1,  # ~6 % of the image
            ((xx - 260) / 12.0) ** 2 + ((yy - 60) / 20.0) ** 2 < 1,  # ~1 %
            ((xx - 40) / 3.0) ** 2 + ((yy - 200) / 2.0) ** 2 < 1]  # a few pixels


@pytest.mark.reference("onnx")
def test_authors_weights_logits_and_masks_match_torch_path():
    import flip

    model = flip.pretrained("flip-tiny", path=reference.onnx_path()).eval()
    for counts in COUNTS[:3]:
        batch = _batch([counts], seed=7)
        q = torch.rand(2500, 2) * 0.5 - 0.25
        ref = _run(lambda: model.decode(model.encode(batch), q, [2500]))
        ours = _run(lambda: ort_run.decode(model, ort_run.encode(model, batch), q, [2500]))
        # trained scores reach ~5000: the two libraries' roundings differ by up to a few 1e-3 on the logits
        # (the torch fast path vs the authors' onnxruntime graph: ~3.6e-3, docs in flip/modeling/numerics.py)
        assert torch.allclose(ours, ref, atol=1e-2, rtol=1e-3), float((ours - ref).abs().max())
        sure = ref.abs() > 0.01
        assert torch.equal(ours[sure] > 0, ref[sure] > 0)


def test_sessions_follow_the_thread_policy():
    """One intra-op thread, no spinning (flip/runtime.py: the thread budget goes to query runs, never to spinning
    workers that burn a shared core), full graph optimisation."""
    import onnxruntime as ort

    sess = ort_sessions.sessions(_model()).encoder.session
    so = sess.get_session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL



@pytest.mark.parametrize("counts", COUNTS)
def test_sampler_arrays_go_straight_to_the_graph_with_the_token_batch_values(counts):
    """encode_objects on one object's sampler arrays (uint8 HWC) skips the TokenBatch; keys/values are bit-identical
    to the TokenBatch route, and the torch backend still takes the TokenBatch route."""
    model = _model()
    img = synthetic_image()
    h, w = img.shape[:2]
    P, C = crop_patches(img, np.array([120.0, 100.0]), 9.0, counts, np.random.default_rng(3))
    pos = position(np.array([120.0, 100.0]), 9.0, 6.0, 0.8, 0.6, w, h)[None]
    batch = TokenBatch.from_objects([P], [C], pos, (1, 2, 4, 8, 16))
    via_batch = _run(lambda: ort_run.encode(model, batch))
    direct = _run(lambda: ort_run.encode_objects(model, [P], [C], pos))
    assert torch.equal(direct.k, via_batch.k) and torch.equal(direct.v, via_batch.v)
    assert direct.kv_lens.tolist() == via_batch.kv_lens.tolist()
    coords = torch.rand(500, 2) * 0.4 - 0.2
    a = _run(lambda: ort_run.decode(model, direct, coords, [500]))
    b = _run(lambda: ort_run.decode(model, via_batch, coords, [500]))
    assert torch.equal(a, b)
    ref = _run(lambda: model.encode_objects([P], [C], pos))
    assert not isinstance(ref, ort_run.OrtKV)
    assert torch.allclose(ref.k, direct.k, atol=1e-3, rtol=1e-4)


def test_sampler_arrays_with_mismatched_counts_are_refused():
    model = _model()
    img = synthetic_image()
    P, C = crop_patches(img, np.array([120.0, 100.0]), 9.0, COUNTS[0], np.random.default_rng(3))
    C[0] = C[0][:-1]
    pos = position(np.array([120.0, 100.0]), 9.0, 6.0, 0.8, 0.6, *img.shape[1::-1])[None]
    with pytest.raises(ValueError, match="patches but"):
        _run(lambda: ort_run.encode_objects(model, [P], [C], pos))


def test_objects_of_one_batch_encode_in_parallel_to_the_same_keys_values():
    """With a thread budget > 1 the objects of a batch run their encoder graphs concurrently: same bits as one by one."""
    model = _model()
    batch = _batch(list(COUNTS))
    one = _run(lambda: ort_run.encode(model, batch, workers=1))
    two = _run(lambda: ort_run.encode(model, batch, workers=2))
    assert torch.equal(one.k, two.k) and torch.equal(one.v, two.v) and one.kv_lens.tolist() == two.kv_lens.tolist()


def test_decoder_runs_are_sized_for_the_cache_and_do_not_change_logits():
    """decoder_chunk: runs keep H × run × keys float32 scores within ORT_SCORES_BYTES (clamped); the
    logits do not depend on how the queries are split into runs."""
    for keys in (1, 88, 256, 500, 5000):
        c = ort_run.decoder_chunk(keys, 4)
        assert ort_run.ORT_MIN_DECODER_CHUNK <= c <= ort_run.ORT_DECODER_CHUNK
        assert c == ort_run.ORT_MIN_DECODER_CHUNK or 4 * 4 * keys * c <= ort_run.ORT_SCORES_BYTES
    assert ort_run.decoder_chunk(500, 4) < ort_run.decoder_chunk(88, 4)
    model = _model()
    batch = _batch([COUNTS[2], COUNTS[0]])
    coords = torch.rand(3000, 2) * 0.6 - 0.3
    cache = _run(lambda: ort_run.encode(model, batch))
    ref = _run(lambda: ort_run.decode(model, cache, coords, [1800, 1200], chunk=4096))
    for chunk in (None, 256, 1000):
        got = _run(lambda: ort_run.decode(model, cache, coords, [1800, 1200], chunk=chunk))
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-6)
