"""SA-1B as a dataset: tar shards and extracted folders written by a fixture in the SA-1B layout (with a truncated
json, a jpg that is not an image, an RLE sized for another image and a lone file), the benchmark adapter, the
streamed training split over ranks and DataLoader workers, resume, and a 2-process gloo run."""

import pytest
import torch
import torch.multiprocessing as mp

from segcore.datasets import ItemError, Sa1bDataset, open_dataset, prompts_of
from tests.fixtures import make_sa1b

pytest.importorskip("flip.sampler", reason="flip.sampler (fovea sampler binding) not built")

from flip.training.data import SampleConfig, ShardStream, collate  # noqa: E402


@pytest.fixture(scope="module", params=[True, False], ids=["tar", "folder"])
def sa1b(request, tmp_path_factory):
    return make_sa1b(tmp_path_factory.mktemp("sa1b"), tar=request.param)


def _cfg():
    return SampleConfig(max_tokens=256, mean_tokens=96, masks_per_image=2, augment=False)


def test_adapter_counts_and_skips_broken_members(sa1b):
    ds = open_dataset(f"sa1b={sa1b['root']}")
    assert isinstance(ds, Sa1bDataset) and ds.name == "sa1b"
    ids = {e.image_id for e in ds.index()}
    assert ids == set(sa1b["good"])  # the truncated json never reaches the index: counted
    assert ds.problems["corrupt_json"] == 1 and ds.problems["unpaired_files"] == 1
    assert len(ds) == len(sa1b["objects"]) + 3
    ok, failed = 0, []
    for e in ds.index():
        try:
            image, prompts, gts, unusable = prompts_of(ds, e, e.objects)
        except ItemError as err:
            failed.append((e.image_id, str(err)))
            continue
        if e.image_id == "sa_000003":  # RLEs sized for another image: each object fails alone, with the reason
            assert unusable == 3 and not prompts
            masks = ds.load_masks(e, [o.object_id for o in e.objects])
            assert all(isinstance(m, ItemError) and "does not match the image size" in str(m) for m in masks.values())
            continue
        assert image.shape == (64, 80, 3) and unusable == 0 and len(prompts) == len(e.objects) == 3
        assert all(g.shape == (64, 80) and g.any() for g in gts)
        ok += 1
    assert ok == len(ids) - 2 and [f[0] for f in failed] == ["sa_000002"] and "cannot decode" in failed[0][1]
    areas = ds.mask_areas(ds.index()[-1], [o.object_id for o in ds.index()[-1].objects])
    assert all(a[1] == 64 * 80 and 0 < a[0] < a[1] for a in areas.values())


def test_single_tar_and_describe(tmp_path):
    info = make_sa1b(tmp_path / "s", n_shards=2, faults=False)
    ds = open_dataset(str(info["root"] / "sa_000001.tar"))
    assert [e.image_id for e in ds.index()] == info["good"][4:]
    assert ds.describe()["shards"] == 1


def test_truncated_tar_keeps_the_pairs_before_the_damage(tmp_path):
    info = make_sa1b(tmp_path / "s", n_shards=1, pairs_per_shard=6, faults=False)
    tar = info["root"] / "sa_000000.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    ds = open_dataset(str(info["root"]))
    n = len(ds.index())
    assert 0 < n < 6 and ds.problems["corrupt_shards"] == 1


def _epoch_keys(src, world, seed=3, epochs=1):
    return [[(e, src.shards[si].name, stem) for _, e, si, stem in src.stream(seed, r, world, epochs=epochs)]
            for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_split_disjoint_and_complete(sa1b, world):
    src = open_dataset(str(sa1b["root"])).source
    per_rank = _epoch_keys(src, world)
    flat = [stem for keys in per_rank for _, _, stem in keys]
    assert len(flat) == len(set(flat)) and set(flat) == set(sa1b["all"])
    # another epoch is another order of the same pairs; another seed another order
    e1 = [k for k in _epoch_keys(src, 1, epochs=2)[0] if k[0] == 1]
    assert sorted(s for _, _, s in e1) == sorted(sa1b["all"]) and [s for _, _, s in e1] != [s for _, _, s in _epoch_keys(src, 1)[0]]
    assert _epoch_keys(src, world) == per_rank  # deterministic from the seed


def test_more_ranks_than_shards_is_a_clear_error(tmp_path):
    from segcore.datasets import DatasetError

    info = make_sa1b(tmp_path / "s", n_shards=2, faults=False)
    with pytest.raises(DatasetError, match="2 shard"):
        next(open_dataset(str(info["root"])).source.stream(0, 0, 3))


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_split_disjoint_complete_and_in_stream_order(sa1b, workers):
    src = open_dataset(str(sa1b["root"])).source
    for start in (0, 6):
        stream = ShardStream(src, _cfg(), seed=3, batch_images=2, rank=1, world=2)
        stream.set_start(start)
        whole = [k[0] for k in stream.keys(epochs=2)]
        parts = [[k[0] for k in stream.keys(w, workers, epochs=2)] for w in range(workers)]
        assert sorted(k for p in parts for k in p) == whole  # disjoint and complete
        # the DataLoader takes one batch from each worker in turn: that order is the stream's order
        batches = [[p[i:i + 2] for i in range(0, len(p), 2)] for p in parts]
        rr = [k for j in range(max(map(len, batches))) for b in batches if j < len(b) for k in b[j]]
        assert rr == whole[: len(rr)] and whole[0] == start


def _batch_keys(loader, n):
    out = []
    for batch, _ in zip(loader, range(n)):
        out.append(None if batch is None else batch["position"].numpy().round(5).tolist())
    return out


def test_dataloader_workers_and_resume_give_the_same_batches(tmp_path):
    info = make_sa1b(tmp_path / "s", n_shards=3, pairs_per_shard=4)
    src = open_dataset(str(info["root"])).source

    def loader(workers, start):
        ds = ShardStream(src, _cfg(), seed=5, batch_images=2)
        ds.set_start(start)
        return torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate,
                                           prefetch_factor=1 if workers else None)

    ref = _batch_keys(loader(0, 0), 9)  # 18 items: crosses into the second epoch (12 pairs per epoch)
    assert _batch_keys(loader(2, 0), 9) == ref
    assert _batch_keys(loader(0, 8), 5) == ref[4:]  # resumed after 4 batches of 2
    assert _batch_keys(loader(2, 8), 5) == ref[4:]
    assert sum(b is not None for b in ref) >= 6


def test_stream_counts_broken_pairs(tmp_path):
    info = make_sa1b(tmp_path / "s", n_shards=1, pairs_per_shard=4)
    ds = ShardStream(open_dataset(str(info["root"])).source, _cfg(), seed=0, batch_images=4)
    items = [ds.item(e, si, stem) for _, e, si, stem in ds.source.stream(0, epochs=1)]
    assert sorted(len(i) for i in items) == [0, 0, 0, 2]
    assert ds.errors["images"] == 2 and ds.errors["masks"] == 2  # json + jpg; both picks of the resized-RLE pair


def test_train_on_shards_resumes_exactly(tmp_path):
    from flip.training.checkpoint import load_checkpoint
    from flip.training.cli import parse_args
    from flip.training.loop import train

    info = make_sa1b(tmp_path / "s", n_shards=3, pairs_per_shard=3, faults=False)

    def args(out, steps, *extra):
        return parse_args(["--data", f"sa1b={info['root']}", "--out", str(out), "--steps", str(steps),
                           "--batch-images", "2", "--masks-per-image", "2", "--max-tokens", "256", "--mean-tokens", "96",
                           "--no-progress", "--ckpt-every", "2", "--log-every", "1", *extra])

    full = train(args(tmp_path / "a", 6))
    assert full["step"] == 6 and full["epoch"] >= 1  # 9 pairs per epoch, 12 consumed
    train(args(tmp_path / "b", 3))
    res = train(args(tmp_path / "b", 6, "--resume"))
    assert res["position"] == full["position"] == 12
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)


def _gloo_rank(rank, world, init_file, root, out):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    src = open_dataset(root).source
    ds = ShardStream(src, _cfg(), seed=11, batch_images=2, rank=torch.distributed.get_rank(),
                     world=torch.distributed.get_world_size())
    images, objects = [], []
    for _, epoch, si, stem in ds.source.stream(ds.seed, ds.rank, ds.world, epochs=1):
        images.append(stem)
        objects += [o["key"] for o in ds.item(epoch, si, stem)]
    got = [None] * world
    torch.distributed.all_gather_object(got, {"images": images, "objects": objects})
    if rank == 0:
        torch.save(got, out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_see_disjoint_objects_covering_the_epoch(tmp_path):
    info = make_sa1b(tmp_path / "s", n_shards=4, pairs_per_shard=3, faults=False)
    out = tmp_path / "got.pt"
    mp.start_processes(_gloo_rank, args=(2, str(tmp_path / "init"), str(info["root"]), str(out)), nprocs=2,
                       start_method="spawn", join=True)
    got = torch.load(out, weights_only=True)
    imgs = [set(g["images"]) for g in got]
    objs = [set(g["objects"]) for g in got]
    assert not imgs[0] & imgs[1] and imgs[0] | imgs[1] == set(info["all"])
    assert all(len(g["images"]) == len(set(g["images"])) for g in got)
    assert not objs[0] & objs[1] and len(objs[0] | objs[1]) >= len(info["all"])  # ≥ 1 object drawn per image
    stems = {k.split(":")[-2].split("/")[-1] for k in objs[0] | objs[1]}
    assert stems == set(info["all"])


@pytest.mark.parametrize("variant", ["tiny", "small", "middle", "large"])
def test_paper_recipes_fix_256_objects_per_step(variant):
    from pathlib import Path

    from flip.training.cli import parse_args
    from flip.training.loop import ConfigError, images_per_process

    cfg = Path(__file__).resolve().parents[1] / "flip" / "training" / "configs" / f"flip-{variant}-sa1b.toml"
    a = parse_args(["--config", str(cfg), "--data", "sa1b=/data/sa1b"])
    assert a.model == f"flip-{variant}" and a.global_batch == 256 and a.sampler_compat == "authors"
    assert (a.lr, a.weight_decay, a.mean_tokens, a.mask_pixels) == (6e-4, 6e-4, 512, 2048)
    for world in (1, 2, 4, 8, 16, 64):
        assert images_per_process(a.global_batch, a.masks_per_image, world) * a.masks_per_image * world == 256
    with pytest.raises(ConfigError, match="world size"):
        images_per_process(a.global_batch, a.masks_per_image, 3)


def test_benchmark_runs_on_a_held_out_shard(tmp_path):
    """`python -m benchmark --data sa1b=SHARD.tar`: every readable object scored; the undecodable jpg's objects and
    the RLEs sized for another image recorded as failed with the reason; the broken json never reaches the records."""
    from benchmark.cli import main as cli_main
    from segcore.records import read_rows

    info = make_sa1b(tmp_path / "s", n_shards=1, pairs_per_shard=5)
    rc = cli_main(["--model", "oracle-box", "--data", f"sa1b={info['root'] / 'sa_000000.tar'}", "--results",
                   str(tmp_path / "r"), "--run", "x", "--no-latest", "--no-progress", "--warmup", "0"])
    assert rc == 0
    rows = read_rows(tmp_path / "r" / "x")
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["dataset"] for r in rows} == {"sa1b"}
    assert {r["image_id"] for r in ok} == {"sa_000004", "sa_000005"} and len(ok) == 6
    assert {r["image_id"] for r in failed} == {"sa_000002", "sa_000003"} and len(failed) == 6
    assert any("does not match the image size" in r["reason"] for r in failed if r["image_id"] == "sa_000003")
