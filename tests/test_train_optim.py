"""Ranger (RAdam + Lookahead) semantics of docs/flip.md §6.6 and the boundary-group balancer of §6.5."""
import math

import numpy as np
import pytest
import torch

from flip.training.groups import GroupBalancer, default_counts, group_ious, redistribute
from flip.training.optim import RAdam, ranger


def _rho(t, b2=0.999):
    rmax = 2 / (1 - b2) - 1
    return rmax - 2 * t * b2**t / (1 - b2**t)


def test_radam_no_update_while_sma_below_5_and_decay_only_when_updating():
    p = torch.nn.Parameter(torch.ones(3))
    opt = RAdam([p], lr=0.1, weight_decay=0.5)
    first = next(t for t in range(1, 20) if _rho(t) >= 5)
    for t in range(1, first):
        p.grad = torch.ones(3)
        opt.step()
        assert torch.equal(p.data, torch.ones(3)), f"step {t} changed the weights"
    p.grad = torch.zeros(3)  # zero gradient now: only the momentum of the earlier steps and the decay move p
    before = p.detach().clone()
    opt.step()
    st = opt.state[p]
    m, v = st["exp_avg"], st["exp_avg_sq"]
    size = RAdam.step_size(first, 0.9, 0.999)
    expected = before * (1 - 0.5 * 0.1) - 0.1 * size * m / (v.sqrt() + 1e-16)
    assert torch.allclose(p.data, expected, atol=1e-7)
    assert not torch.equal(p.data, before)


def test_radam_step_size_formula():
    t, b1, b2 = 50, 0.9, 0.999
    r, rmax = _rho(t), 2 / (1 - b2) - 1
    rect = math.sqrt((1 - b2**t) * (r - 4) / (rmax - 4) * (r - 2) / r * rmax / (rmax - 2))
    assert RAdam.step_size(t, b1, b2) == pytest.approx(rect / (1 - b1**t))


def test_lookahead_matches_manual_reference_and_state_roundtrip():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    ref = torch.nn.Parameter(p.detach().clone())
    opt = ranger([p], lr=0.05, k=6, alpha=0.5)
    inner = RAdam([ref], lr=0.05)
    slow = ref.detach().clone()
    for t in range(1, 20):
        g = torch.randn(5)
        p.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        inner.step()
        if t % 6 == 0:  # slow ← slow + α(fast − slow); fast ← slow
            slow += 0.5 * (ref.detach() - slow)
            ref.data.copy_(slow)
        assert torch.allclose(p.data, ref.data, atol=1e-7), t
    # a state round-trip continues identically (slow weights, counters, moments)
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = ranger([q], lr=0.05)
    opt2.load_state_dict(opt.state_dict())
    for _ in range(7):
        g = torch.randn(5)
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert torch.equal(p.data, q.data)


def test_redistribute_exact_rule():
    iou = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    d = 1 - iou
    expected = 4 + np.floor(2020 * d / d.sum()).astype(int)
    expected[0] += 2048 - expected.sum()
    assert np.array_equal(redistribute(iou), expected)
    assert redistribute(iou).sum() == 2048
    assert np.array_equal(redistribute(np.ones(7)), default_counts())
    assert list(default_counts()) == [296, 292, 292, 292, 292, 292, 292]


def test_group_ious_per_sample_slices():
    counts = torch.tensor([[2, 2], [1, 3]])
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    logits = torch.tensor([[1.0, -1, -1, -1], [-1, 1, -1, -1]])
    iou = group_ious(logits, labels, counts)
    # sample 0: group0 perfect (1), group1 misses its positive (0); sample 1: group0 empty union (1), group1 1/2
    assert torch.allclose(iou, torch.tensor([1.0, 0.25]))


def test_balancer_moves_pixels_to_the_worst_group_and_can_be_disabled():
    bal = GroupBalancer()
    bad = np.array([0.2, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    for _ in range(50):
        counts = bal.update(bad)
    assert counts.sum() == 2048 and counts[0] > 1000 and counts[1:].min() >= 4
    shared = bal.shared  # the tensor workers read follows
    assert shared[0].item() == counts[0]
    bal.update(np.array([np.nan] * 7))  # a bad batch leaves the statistics alone
    assert np.array_equal(bal.counts(), counts)
    st = bal.state_dict()
    bal2 = GroupBalancer()
    bal2.load_state_dict(st)
    assert np.array_equal(bal2.counts(), counts)
    off = GroupBalancer(enabled=False)
    for _ in range(50):
        off.update(bad)
    assert np.array_equal(off.counts(), default_counts())


def test_mixture_sampler_weights_ranks_and_resume():
    from flip.training.data import MixtureSampler

    s = MixtureSampler([50, 5], [3.0, 1.0], seed=1, epoch_length=4000)
    items = list(s)
    frac0 = np.mean([d == 0 for d, *_ in items])
    assert 0.72 < frac0 < 0.78  # weights, not dataset sizes, set the mix
    assert all(0 <= i < (50 if d == 0 else 5) for d, i, *_ in items)
    assert [p for *_, p in items] == list(range(4000))
    # two ranks: disjoint draws that interleave into the single-stream order of a world-size-2 stream
    r0 = list(MixtureSampler([50, 5], [3.0, 1.0], seed=1, epoch_length=100, rank=0, world=2))
    r1 = list(MixtureSampler([50, 5], [3.0, 1.0], seed=1, epoch_length=100, rank=1, world=2))
    firsts = [(d, i) for d, i, *_ in r0[:10]] + [(d, i) for d, i, *_ in r1[:10]]
    assert len(set(firsts)) > 12  # not the same images on both ranks
    # resume: start=k yields exactly the tail of the epoch
    s2 = MixtureSampler([50, 5], [3.0, 1.0], seed=1, epoch_length=4000)
    s2.set_epoch(0, start=1234)
    assert list(s2) == items[1234:]
    with pytest.raises(ValueError):
        MixtureSampler([5, 5], [1.0], seed=0, epoch_length=10)
