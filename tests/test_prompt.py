"""Prompt conversions (docs/flip.md §0): mask → rho → rot → model units, boxes, and the error cases."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from flip.gaussian import PER_AXIS, PIXEL, model_position, rot_from_rho, sampler_gaussian
from segcore.prompt import Prompt, PromptError, box_from_mask, rho_from_mask, validate_rho, xywh_to_xyxy, xyxy_to_xywh


def ellipse(h, w, cx, cy, ax, ay, angle_deg):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.deg2rad(angle_deg)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1


def test_rho_matches_meshgrid_definition():
    rng = np.random.default_rng(0)
    m = rng.random((37, 53)) > 0.7
    h, w = m.shape
    xx, yy = np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h))
    s = m.sum()
    mx, my = (m * xx).sum() / s, (m * yy).sum() / s
    expect = [mx, my, (m * xx * xx).sum() / s - mx**2, (m * yy * yy).sum() / s - my**2, (m * xx * yy).sum() / s - mx * my]
    np.testing.assert_allclose(rho_from_mask(m), expect, rtol=1e-10, atol=1e-14)


def test_rot_axes_follow_the_authors_mirrored_convention():
    # 30° ellipse: minor axis eigenvector must be (−a, b) and the stds the sqrt eigenvalues (docs/flip.md §0, §3.9)
    m = ellipse(201, 201, 100, 100, 60, 20, 30)
    rho = rho_from_mask(m)
    mx, my, s1, s2, a, b = rot_from_rho(rho)
    cov = np.array([[rho[2], rho[4]], [rho[4], rho[3]]])
    evals, evecs = np.linalg.eigh(cov)
    np.testing.assert_allclose([s1, s2], np.sqrt(evals), rtol=1e-9)
    minor = np.array([-a, b])
    assert abs(abs(minor @ evecs[:, 0]) - 1) < 1e-9
    assert a * a + b * b == pytest.approx(1.0)


def test_model_units_per_axis_and_pixel_agree_on_a_square_isotropic_object():
    m = ellipse(256, 256, 100.0, 140.0, 30, 30, 0)
    rho = rho_from_mask(m)
    pa = model_position(rho, 256, 256, PER_AXIS)
    px = model_position(rho, 256, 256, PIXEL)
    # the two differ only by the W vs W−1 scale of the norm frame (1/255 relative) on a square image
    np.testing.assert_allclose(pa[:4], px[:4], rtol=0.01, atol=0.01)
    # mean in pixels: model unit 1 = 128 px, origin at the image centre
    mean = Prompt.from_mask(m).mean_px
    np.testing.assert_allclose(px[:2], mean / 128 - 1.0, atol=1e-9)


def test_pixel_convention_recovers_pixel_covariance_on_non_square_image():
    m = ellipse(120, 300, 150, 60, 50, 15, 25)
    p = Prompt.from_mask(m)
    g = sampler_gaussian(p.rho, 300, 120, PIXEL)
    s1, s2, a, b = g[2:]
    u1, u2 = np.array([-a, b]), np.array([-b, -a])
    cov = s1**2 * np.outer(u1, u1) + s2**2 * np.outer(u2, u2)
    np.testing.assert_allclose(cov, p.cov_px, rtol=1e-6, atol=1e-6)
    # the per-axis convention distorts the same covariance on a non-square image (docs/flip.md §0 quirk)
    g_pa = sampler_gaussian(p.rho, 300, 120, PER_AXIS)
    assert not np.allclose(g_pa[2:4], g[2:4], rtol=0.05)


def test_box_matches_coco_bbox_convention():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = np.zeros((40, 60), np.uint8)
        x0, y0 = rng.integers(0, 30), rng.integers(0, 20)
        m[y0 : y0 + rng.integers(1, 10), x0 : x0 + rng.integers(1, 20)] = 1
        box = box_from_mask(m)
        coco = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m)))
        np.testing.assert_allclose(xyxy_to_xywh(box), coco)
        np.testing.assert_allclose(xywh_to_xyxy(coco), box)


def test_box_prompt_gaussian_is_the_inscribed_ellipse():
    p = Prompt.from_box([10, 20, 50, 40], 100, 80)
    np.testing.assert_allclose(p.mean_px, [29.5, 29.5])
    np.testing.assert_allclose(np.diag(p.cov_px), [100.0, 25.0])
    m = ellipse(400, 400, 199.5, 199.5, 100, 50, 0)
    q = Prompt.from_mask(m)
    r = Prompt.from_box(q.box_xyxy, 400, 400)
    np.testing.assert_allclose(np.diag(r.cov_px), np.diag(q.cov_px), rtol=0.03)


def test_errors_are_clear():
    with pytest.raises(PromptError, match="empty"):
        Prompt.from_mask(np.zeros((5, 5), bool))
    with pytest.raises(PromptError, match="2-D"):
        Prompt.from_mask(np.zeros((5, 5, 3), bool))
    with pytest.raises(PromptError, match="NaN"):
        validate_rho(np.array([0, 0, np.nan, 1, 0]))
    with pytest.raises(PromptError, match="semi-definite"):
        validate_rho(np.array([0, 0, 1, 1, 2.0]))
    with pytest.raises(PromptError, match="box"):
        Prompt.from_box([5, 5, 5, 9], 10, 10)
    full = Prompt.from_mask(np.ones((7, 9), bool))  # a full mask is valid
    assert full.area == 63 and np.allclose(full.rho[:2], 0)
    one = Prompt.from_mask(np.pad(np.ones((1, 1), bool), 3))  # one pixel: zero variance, clipped stds
    assert rot_from_rho(one.rho)[2] == pytest.approx(1e-8)
