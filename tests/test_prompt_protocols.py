"""segcore.prompt_protocols: jitter statistics, identity seeds, detection matching, bad detection files, prompt sets."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segcore.prompt import Prompt, rho_from_box
from segcore.prompt_protocols import (MIN_SIDE, PromptProtocol, PromptSet, PromptSetWriter, ProtocolError, ProtocolSpec,
                                      box_jitter, equivalent_sides, gaussian_jitter, load_detections, match_detections,
                                      object_seed, parse_protocol, principal_frame)

N = 12000


def _rect(h=1000, w=1000, box=(400, 450, 600, 510), **meta):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return Prompt.from_mask(m, **meta)


def _draws(prompt, fn, level, cap, n=N, seed=0):
    return [fn(prompt, level, cap, np.random.default_rng(object_seed(seed, "img", str(i)))) for i in range(n)]


def test_parse_canonical_forms_and_errors():
    assert str(parse_protocol(None)) == "oracle" and str(parse_protocol("oracle")) == "oracle"
    assert str(parse_protocol("box-jitter")) == "box-jitter:0.1,20"  # the SAM paper's defaults
    assert str(parse_protocol("box-jitter:0.05")) == "box-jitter:0.05,20"
    assert str(parse_protocol("gaussian-jitter:0.2,8")) == "gaussian-jitter:0.2,8"
    assert parse_protocol("detections=/x/dets.json").path == "/x/dets.json"
    assert parse_protocol("box-jitter:0.1,20").slug() == "box-jitter-0.1-20"
    for bad in ("box", "box-jitter:x", "box-jitter:-0.1", "box-jitter:0.1,0", "box-jitter:nan", "detections=", "box-jitter:1,2,3"):
        with pytest.raises(ProtocolError):
            parse_protocol(bad)


def test_box_jitter_mean_spread_and_sub_pixel():
    p = _rect()  # box 200 × 60 px in the middle of a 1000² image: no clipping, no cap at cap=1000
    b = np.array([d.box_xyxy for d in _draws(p, box_jitter, 0.1, 1000.0)])
    noise = b - p.box_xyxy
    side = np.array([200, 60, 200, 60.0])
    sd = 0.1 * side
    assert np.all(np.abs(noise.mean(0)) < 4 * sd / math.sqrt(N))  # unbiased
    np.testing.assert_allclose(noise.std(0), sd, rtol=0.03)  # N(0, σ·side) per coordinate
    assert np.mean(b != np.round(b)) > 0.999  # sub-pixel: never rounded
    # coordinates are independent: the centre moves by σ·side/√2, the width by σ·side·√2
    np.testing.assert_allclose(((b[:, 2] + b[:, 0]) / 2).std(), 0.1 * 200 / math.sqrt(2), rtol=0.03)


def test_box_jitter_cap_and_clip():
    p = _rect(box=(300, 300, 700, 700))  # side 400: σ·side = 40 px, cap 20 px
    noise = np.array([d.box_xyxy for d in _draws(p, box_jitter, 0.1, 20.0, n=5000)]) - p.box_xyxy
    assert np.abs(noise).max() <= 20.0 + 1e-9
    assert 0.55 < np.mean(np.isclose(np.abs(noise), 20.0)) < 0.69  # P(|z| > 0.5) = 0.617 of draws hit the cap
    # an object at the border: clipped to the image, sides never below MIN_SIDE
    q = _rect(h=50, w=60, box=(58, 0, 60, 3))
    for d in _draws(q, box_jitter, 0.2, 20.0, n=3000):
        x0, y0, x1, y1 = d.box_xyxy
        assert 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 50 and x1 - x0 >= MIN_SIDE - 1e-12 and y1 - y0 >= MIN_SIDE - 1e-12


def test_one_pixel_object_keeps_sub_pixel_noise():
    p = _rect(h=100, w=100, box=(50, 50, 51, 51))
    b = np.array([d.box_xyxy for d in _draws(p, box_jitter, 0.1, 20.0, n=5000)])
    np.testing.assert_allclose((b - p.box_xyxy).std(0), 0.1, rtol=0.05)  # 0.1 px, not rounded to 0 or 1


def test_box_jitter_moves_the_gaussian_by_the_same_map():
    p = _rect()
    for d in _draws(p, box_jitter, 0.2, 20.0, n=200):
        b, ob = d.box_xyxy, p.box_xyxy
        rel = (d.mean_px + 0.5 - b[:2]) / (b[2:] - b[:2])
        np.testing.assert_allclose(rel, (p.mean_px + 0.5 - ob[:2]) / (ob[2:] - ob[:2]), atol=1e-9)
        np.testing.assert_allclose(np.sqrt(np.diag(d.cov_px)) / (b[2:] - b[:2]),
                                   np.sqrt(np.diag(p.cov_px)) / (ob[2:] - ob[:2]), rtol=1e-9)


def test_gaussian_jitter_level_matches_box_sigma_on_a_rectangle():
    p = _rect()
    lam, u = principal_frame(p.cov_px)
    np.testing.assert_allclose(equivalent_sides(lam), [200, 60], rtol=1e-9)  # equivalent box = the tight box
    g = _draws(p, gaussian_jitter, 0.1, 1000.0)
    shift = np.array([d.mean_px for d in g]) - p.mean_px
    # the centre moves as the box centre does under box-jitter σ = level: σ·side/√2 per axis
    np.testing.assert_allclose(shift.std(0), [0.1 * 200 / math.sqrt(2), 0.1 * 60 / math.sqrt(2)], rtol=0.03)
    assert np.all(np.abs(shift.mean(0)) < 4 * shift.std(0) / math.sqrt(N))
    # per-axis scale: the sides of the equivalent box change by N(0, σ·side·√2)
    sides = np.array([equivalent_sides(principal_frame(d.cov_px)[0]) for d in g])
    np.testing.assert_allclose(sides[:, 1].std(), 0.1 * 60 * math.sqrt(2), rtol=0.05)
    # rotation: N(0, 2·level) rad (the major axis of an elongated Gaussian shows it)
    ang = np.array([0.5 * math.atan2(2 * d.cov_px[0, 1], d.cov_px[0, 0] - d.cov_px[1, 1]) for d in g])
    np.testing.assert_allclose(ang.std(), 0.2, rtol=0.05)


def test_gaussian_jitter_box_follows_and_rotation_is_capped():
    p = _rect()
    for d in _draws(p, gaussian_jitter, 0.2, 20.0, n=500):
        # rotation capped where the end of the 200 px major axis would move > 20 px: |φ| ≤ 2·20/200
        ang = 0.5 * math.atan2(2 * d.cov_px[0, 1], d.cov_px[0, 0] - d.cov_px[1, 1])
        assert abs(ang) <= 0.2 + 1e-9
        x0, y0, x1, y1 = d.box_xyxy
        assert x0 <= d.mean_px[0] + 0.5 <= x1 and y0 <= d.mean_px[1] + 0.5 <= y1
        assert 0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 1000


@pytest.mark.parametrize("fn", [box_jitter, gaussian_jitter])
def test_level_zero_is_the_oracle_exactly(fn):
    p = _rect(image_id="a", object_id="b")
    d = fn(p, 0.0, 20.0, np.random.default_rng(1))
    assert np.array_equal(d.rho, p.rho) and np.array_equal(d.box_xyxy, p.box_xyxy)


@pytest.mark.parametrize("proto", ["box-jitter:0.1,20", "gaussian-jitter:0.2,20"])
def test_seeds_from_identity_not_position(proto):
    rng = np.random.default_rng(0)
    prompts = {}
    for k in range(6):
        x, y = rng.integers(0, 800, 2)
        prompts[f"o{k}"] = _rect(box=(x, y, x + 30 + k, y + 20), image_id="img7", object_id=f"o{k}")
    pr = PromptProtocol(proto, seed=3)
    alone = pr.image("ds", "img7", {"o4": prompts["o4"]})["o4"].prompt
    order = ["o1", "o5", "o4", "o0", "o2", "o3"]  # o4 third in a shuffled batch
    batch = pr.image("ds", "img7", {k: prompts[k] for k in order})
    assert np.array_equal(batch["o4"].prompt.box_xyxy, alone.box_xyxy) and np.array_equal(batch["o4"].prompt.rho, alone.rho)
    assert not np.array_equal(batch["o1"].prompt.box_xyxy - prompts["o1"].box_xyxy, alone.box_xyxy - prompts["o4"].box_xyxy)
    other_seed = PromptProtocol(proto, seed=4).image("ds", "img7", {"o4": prompts["o4"]})["o4"].prompt
    assert not np.array_equal(other_seed.box_xyxy, alone.box_xyxy)
    assert batch["o4"].object_seed == object_seed(3, "img7", "o4")


def test_detection_matching_greedy_by_score_with_misses():
    gt = {"a": np.array([0, 0, 10, 10.0]), "b": np.array([8, 0, 18, 10.0]), "c": np.array([50, 50, 60, 60.0])}
    dets = [(0.5, np.array([1, 0, 11, 10.0]), None, 0),   # IoU 0.82 with a, 0.33 with b
            (0.9, np.array([0, 0, 10, 10.0]), None, 1),   # best score: takes a (IoU 1)
            (0.7, np.array([30, 30, 40, 40.0]), None, 2),  # overlaps nothing: a false positive
            (0.4, np.array([8, 1, 18, 10.0]), None, 3)]   # b (IoU 0.9)
    m = match_detections(gt, dets)
    assert m["a"][0] == 1 and m["b"][0] == 3 and m["c"] is None  # det 0 finds a taken and b below 0.5: unused
    assert math.isclose(m["b"][3], 0.9)
    # through the protocol: misses come back as rows without a prompt; the box→Gaussian rule for FLIP
    p = {k: Prompt.from_box(v, 100, 100, image_id="7", object_id=k) for k, v in gt.items()}
    det = load_detections_from(dets_json([(7, d[1], d[0]) for d in dets]))
    rows = PromptProtocol(ProtocolSpec("detections", path="x"), detections=det).image("ds", "7", p)
    assert rows["c"].miss and not rows["a"].miss
    np.testing.assert_array_equal(rows["b"].prompt.box_xyxy, [8, 1, 18, 10])
    np.testing.assert_allclose(rows["b"].prompt.rho, rho_from_box(np.array([8, 1, 18, 10.0]), 100, 100))


def dets_json(items):
    return [{"image_id": i, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s, "category_id": 1} for i, b, s in items]


def load_detections_from(data, ids=None, tmp=None):
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp()) / "dets.json"
    d.write_text(json.dumps(data))
    return load_detections(d, ids)


def test_bad_detection_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProtocolError, match="not valid JSON"):
        load_detections(bad)
    with pytest.raises(ProtocolError, match="cannot read"):
        load_detections(tmp_path / "missing.json")
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ProtocolError, match="results list"):
        load_detections(bad)
    good = {"image_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}
    entries = [good, {"image_id": 1, "bbox": [1, 2, 3, 4]}, {"bbox": [1, 2, 3, 4], "score": 1},
               {"image_id": 1, "bbox": [float("nan"), 2, 3, 4], "score": 0.5}, {"image_id": 1, "bbox": [1, 2, 0, 4], "score": 0.5},
               {"image_id": 99, "bbox": [1, 2, 3, 4], "score": 0.5}, {"image_id": 1, "bbox": [1, 2, 3], "score": 0.5},
               {"image_id": 1, "bbox": "x", "score": 0.5}, 7]
    bad.write_text(json.dumps(entries).replace("NaN", "NaN"))
    d = load_detections(bad, image_ids=["1", "2"])
    assert d.summary()["used"] == 1 and d.total == len(entries)
    assert d.skipped == {"missing score": 1, "missing image_id": 1, "NaN or inf in bbox or score": 1,
                         "bbox with zero or negative size": 1, "image id not in the dataset": 1, "bbox not 4 numbers": 1,
                         "bbox or score not numeric": 1, "not an object": 1}
    bad.write_text(json.dumps(entries[1:]))
    with pytest.raises(ProtocolError, match="no usable detection.*missing score: 1"):
        load_detections(bad, image_ids=["1"])


def test_prompt_set_round_trip_is_bit_exact(tmp_path):
    pr = PromptProtocol("gaussian-jitter:0.1,20", seed=5)
    ps = {f"o{k}": _rect(box=(100 + k, 100, 133 + 2 * k, 121), image_id="i", object_id=f"o{k}") for k in range(5)}
    rows = pr.image("mini", "i", ps)
    with PromptSetWriter(tmp_path) as w:
        w.add(rows.values())
        w.add(rows.values())  # a second model: no duplicate rows
    s = PromptSet(tmp_path)
    assert len(s) == 5 and s.protocol == "gaussian-jitter:0.1,20"
    for oid, r in rows.items():
        back = s.get("other-name", "i", oid)  # a one-dataset set answers under any dataset name
        assert np.array_equal(back.prompt.rho, r.prompt.rho) and np.array_equal(back.prompt.box_xyxy, r.prompt.box_xyxy)
        assert back.object_seed == r.object_seed
    assert s.get("mini", "i", "nope") is None
