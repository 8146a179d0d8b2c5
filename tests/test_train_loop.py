"""Trainer end to end on a tiny COCO-format set written by the test (ellipses on noise; a fixture, not training data)."""
import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("flip._fovea", reason="C fovea sampler extension not built (python setup.py build_ext --inplace)")

from flip.training.cli import parse_args  # noqa: E402
from flip.training.data import MixtureSampler, SampleConfig, TrainSet, collate  # noqa: E402
from flip.training.groups import GroupBalancer  # noqa: E402
from flip.training.loop import forward_loss, train  # noqa: E402


def _write_coco(root, n_images=4, size=(64, 80), seed=0):
    from PIL import Image
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    h, w = size
    images, anns = [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n_images):
        img = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
        for j in range(3):
            cx, cy = rng.uniform(12, w - 12), rng.uniform(12, h - 12)
            ax, ay = rng.uniform(3, 14), rng.uniform(3, 10)
            m = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
            img[m] = rng.integers(120, 255, 3)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "segmentation": rle, "area": int(m.sum()),
                         "iscrowd": 0, "category_id": 1, "bbox": [0, 0, 1, 1]})
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "blob"}]}))
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return _write_coco(tmp_path_factory.mktemp("tinycoco"))


def _args(tmp, data, **kw):
    argv = ["--data", str(data), "--out", str(tmp), "--batch-images", "2", "--masks-per-image", "2",
            "--max-tokens", "256", "--mean-tokens", "96", "--log-every", "1", "--no-progress", "--threads", "1"]
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return parse_args(argv)


def _fixed_batch(data, balancer=None):
    from segcore.datasets import open_dataset

    ds = TrainSet([open_dataset(str(data))], SampleConfig(max_tokens=256, mean_tokens=96, masks_per_image=2), seed=3,
                  group_counts=None if balancer is None else balancer.shared)
    sampler = MixtureSampler(ds.sizes(), [1.0], seed=3, epoch_length=4)
    return ds, collate([ds[i] for i in list(iter(sampler))[:2]])


def test_loss_decreases_on_a_fixed_batch(tiny_data):
    from flip.variants import create_model
    from flip.training.optim import ranger

    torch.manual_seed(0)
    _, batch = _fixed_batch(tiny_data)
    assert batch["labels"].shape == (4, 2048)
    model = create_model("flip-tiny")
    opt = ranger(model.parameters(), lr=3e-2)  # large lr: leave the 0.693 plateau within a few steps
    losses = []
    for _ in range(30):
        loss, _ = forward_loss(model, batch, torch.device("cpu"), amp=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[5] == pytest.approx(losses[0], rel=1e-5)  # RAdam warm-up: no update in the first 5 steps
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


def test_samples_follow_the_shared_group_counts(tiny_data):
    bal = GroupBalancer()
    for _ in range(20):
        bal.update([0.1, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95])
    _, batch = _fixed_batch(tiny_data, bal)
    assert torch.equal(batch["group_counts"][0], torch.as_tensor(bal.counts()))
    assert bal.counts()[0] > 1000
    # group 0 (boundary distance ≤ 2) is split half inside, half outside
    n0 = int(bal.counts()[0])
    assert batch["labels"][0, : n0 // 2].min() == 1 and batch["labels"][0, n0 // 2: n0].max() == 0


def test_resume_continues_exactly(tiny_data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(_args(full, tiny_data, steps=9, ckpt_every=100, keep_every=6))
    # an interrupted run: the same command stopped after step 6, then resumed from its checkpoint
    train(_args(part, tiny_data, steps=6, ckpt_every=6))
    res = train(_args(part, tiny_data, steps=9, ckpt_every=6, resume="auto"))
    assert res["step"] == 9

    def losses(p):
        with open(p / "train.csv") as f:
            return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}

    a, b = losses(full), losses(part)
    assert set(b) == set(range(1, 10))
    for s in (7, 8, 9):
        assert b[s] == a[s], (s, a[s], b[s])  # bit-identical, as the trainer README claims
    wa = torch.load(full / "last.pt", weights_only=False)["model"]
    wb = torch.load(part / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ck = torch.load(full / "step00000006.pt", weights_only=False)
    assert ck["step"] == 6 and len(ck["optimizer"]["slow"]) > 0 and "balancer" in ck


def test_config_errors_stop_before_work(tmp_path):
    from flip.training.loop import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        train(_args(tmp_path, tmp_path / "missing", steps=1))
    assert not (tmp_path / "last.pt").exists()


def test_exported_checkpoint_loads_for_inference(tiny_data, tmp_path):
    import flip
    from segcore.datasets import open_dataset
    from segcore.prompt import Prompt
    from flip.training.export import export

    out = tmp_path / "run"
    train(_args(out, tiny_data, steps=2, ckpt_every=2))
    wfile = tmp_path / "w.pt"
    meta = export(out / "last.pt", wfile)
    assert meta["convention"] == "pixel" and meta["step"] == 2
    ck = torch.load(out / "last.pt", weights_only=False)
    model = flip.pretrained("flip-tiny", path=wfile)
    assert model.weights_id.startswith("project:") and model.gaussian_convention == "pixel"
    for k, v in model.state_dict().items():  # fp16 export: equal up to half precision
        assert torch.allclose(v, ck["model"][k].half().float()), k
    seg = flip.create_segmenter("flip-tiny", weights=str(wfile), device="cpu")
    ds = open_dataset(str(tiny_data))
    entry = ds.index()[0]
    image = ds.load_image(entry)
    mask = ds.load_masks(entry, [entry.objects[0].object_id])[entry.objects[0].object_id]
    seg.set_image(image)
    pred = seg.predict([Prompt.from_mask(mask)])
    assert pred[0].shape == mask.shape and pred[0].dtype == bool


def test_dataloader_workers_see_the_shared_group_counts(tiny_data):
    """Workers read the balancer's shared-memory tensor; at most the prefetched batches carry the old split, and
    every batch records the counts it was drawn with."""
    from segcore.datasets import open_dataset
    from flip.training.data import worker_init_fn

    bal = GroupBalancer()
    ds = TrainSet([open_dataset(str(tiny_data))], SampleConfig(max_tokens=256, mean_tokens=96, masks_per_image=1),
                  seed=5, group_counts=bal.shared)
    sampler = MixtureSampler(ds.sizes(), [1.0], seed=5, epoch_length=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, sampler=sampler, num_workers=1, prefetch_factor=1,
                                         collate_fn=collate, worker_init_fn=worker_init_fn)
    it = iter(loader)
    first = next(it)
    for _ in range(30):
        bal.update([0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    rest = [b for b in it if b is not None]
    new = torch.as_tensor(bal.counts())
    assert torch.equal(first["group_counts"][0], torch.as_tensor(np.array([296, 292, 292, 292, 292, 292, 292])))
    assert torch.equal(rest[-1]["group_counts"][0], new)  # after the prefetched ones, the new split arrives
    stale = sum(not torch.equal(b["group_counts"][0], new) for b in rest)
    assert stale <= 2  # num_workers · prefetch_factor batches in flight (+ the one being built)


def test_validation_runs_the_live_model_in_memory(tiny_data, tmp_path):
    """The trainer's held-out check: the model object itself, the neutral adapters and metrics, no files written."""
    import os

    from flip.training.validate import held_out, validate
    from flip.variants import create_model

    subset = held_out(str(tiny_data / "annotations.json"), limit=6, seed=0)
    assert sum(len(objs) for _, objs in subset[1]) == 6
    before = set(os.listdir(tmp_path))
    untrained = validate(create_model("flip-tiny"), subset, "pixel", "exact")
    assert untrained["objects"] == 6 and untrained["failed"] == 0 and set(os.listdir(tmp_path)) == before
    assert untrained["iou"] < 0.6


@pytest.mark.reference("onnx")
def test_validation_with_the_authors_weights_means_something(tiny_data, authors_cache):
    """The authors' weights segment the ellipses: the held-out number is a real one."""
    import flip
    from flip.training.validate import held_out, validate

    subset = held_out(str(tiny_data / "annotations.json"), limit=6, seed=0)
    trained = validate(flip.pretrained("flip-tiny.authors"), subset, "per-axis", "authors")
    assert trained["objects"] == 6 and trained["iou"] > 0.6, trained


def test_r2_item10_trainer_stops_when_no_image_can_be_read(tmp_path):
    """Issue 23 item 10: every image unreadable → a clear error after a bounded number of empty batches (before:
    an endless loop of warnings)."""
    import subprocess
    import sys
    from pathlib import Path

    root = _write_coco(tmp_path / "data", n_images=3)
    for f in (root / "images").iterdir():
        f.write_bytes(b"not an image")
    p = subprocess.run([sys.executable, "-m", "flip.training", "--data", str(root), "--out", str(tmp_path / "run"),
                        "--steps", "1000", "--batch-images", "2", "--masks-per-image", "2", "--max-tokens", "256",
                        "--mean-tokens", "96", "--no-progress", "--threads", "1"],
                       capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 1 and "no usable object" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr) < 50_000  # the warnings are rate-limited
