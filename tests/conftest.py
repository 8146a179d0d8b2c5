"""Shared test fixtures. Every test leaves torch's global state (threads, RNG) as it found it."""
from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Library code must not change torch's global threads or RNG; a test that does is undone here."""
    torch = sys.modules.get("torch")
    if torch is None:  # tests that never load torch pay nothing
        yield
        return
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


@pytest.fixture
def coco_dataset(tmp_path):
    """A small seeded COCO-format dataset folder (see tests/fixtures.py)."""
    from .fixtures import make_coco_dataset

    return make_coco_dataset(tmp_path / "coco", n_images=3, objects_per_image=3, seed=0)
