"""Harness metrics against pycocotools and an independent boundary-IoU implementation."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.metrics import boundary_dilation, boundary_iou, inner_boundary, mask_iou, object_metrics, size_class


def _rle(m):
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def _random_mask(rng, h, w):
    kind = rng.integers(4)
    if kind == 0:
        return rng.random((h, w)) < rng.uniform(0.01, 0.9)
    if kind == 1:
        return np.zeros((h, w), bool)
    m = np.zeros((h, w), bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    m[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
    return m if kind == 2 else ~m


def test_iou_equals_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 70, size=2)
        p, g = _random_mask(rng, h, w), _random_mask(rng, h, w)
        ref = mask_utils.iou([_rle(p)], [_rle(g)], [0])
        ref = float(np.asarray(ref).reshape(-1)[0]) if np.size(ref) else 0.0
        assert mask_iou(p, g) == ref


def test_iou_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        mask_iou(np.zeros((3, 4), bool), np.zeros((4, 3), bool))


def _boundary_by_iterated_erosion(m, d):
    """Independent path: Cheng et al.'s recipe, zero-pad by one pixel and erode with a 3×3 square d times."""
    from scipy.ndimage import binary_erosion

    padded = np.pad(m, 1)
    eroded = binary_erosion(padded, structure=np.ones((3, 3), bool), iterations=d, border_value=0)[1:-1, 1:-1]
    return m & ~eroded


def test_inner_boundary_matches_iterated_erosion():
    rng = np.random.default_rng(1)
    for _ in range(60):
        h, w = rng.integers(2, 60, size=2)
        m = _random_mask(rng, h, w)
        d = int(rng.integers(1, 6))
        np.testing.assert_array_equal(inner_boundary(m, d), _boundary_by_iterated_erosion(m, d))


def test_boundary_iou_against_reference_formula():
    rng = np.random.default_rng(2)
    for _ in range(40):
        h, w = rng.integers(8, 80, size=2)
        p, g = _random_mask(rng, h, w), _random_mask(rng, h, w)
        d = boundary_dilation(h, w)
        pb, gb = _boundary_by_iterated_erosion(p, d), _boundary_by_iterated_erosion(g, d)
        union = (pb | gb).sum()
        assert boundary_iou(p, g) == pytest.approx((pb & gb).sum() / union if union else 0.0, abs=0)


def test_boundary_dilation_is_two_percent_of_diagonal():
    assert boundary_dilation(300, 400) == 10  # diagonal 500
    assert boundary_dilation(10, 10) == 1  # at least one pixel


def test_boundary_iou_is_stricter_than_iou_for_a_shrunk_mask():
    g = np.zeros((200, 200), bool)
    g[20:180, 20:180] = True
    p = np.zeros_like(g)
    p[26:174, 26:174] = True
    assert mask_iou(p, g) > 0.8
    assert boundary_iou(p, g) < 0.5
    assert boundary_iou(g, g) == 1.0


def test_object_metrics_areas_and_size_classes():
    g = np.zeros((100, 50), bool)
    g[:10, :10] = True
    m = object_metrics(g, g)
    assert m["area_px"] == 100 and m["area_ratio"] == 100 / 5000 and m["iou"] == 1.0
    assert size_class(32 * 32 - 1) == "small" and size_class(32 * 32) == "medium" and size_class(96 * 96) == "large"
