"""Distributed training does what one process does: DDP over 2 CPU processes (gloo), each with half of a batch,
ends with the same weights as one process stepping on the whole batch. A run without gradient averaging fails."""
import os
import sys

import pytest
import torch
import torch.multiprocessing as mp

pytest.importorskip("flip._fovea", reason="C fovea sampler extension not built (python setup.py build_ext --inplace)")

LR = 0.5  # plain SGD: the update is the gradient itself, so any averaging error shows in the weights


def _model():
    from flip.variants import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model("flip-tiny")


def _worker(rank: int, world: int, init_file: str, items_path: str, out_path: str, average: bool):
    from flip.training.data import collate
    from flip.training.loop import train_step

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    items = torch.load(items_path, weights_only=True)
    model = _model()
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if average else model
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for step in range(2):
        batch = collate([items[step][rank]])  # this rank's image of the step's global batch
        assert train_step(net, opt, scaler, batch, torch.device("cpu"), amp=False) is not None
    if rank == 0:
        torch.save(model.state_dict(), out_path)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _items(tmp_path):
    from segcore.datasets import open_dataset

    from flip.training.data import SampleConfig, TrainSet
    from tests.test_train_loop import _write_coco

    data = _write_coco(tmp_path / "data")
    ds = TrainSet([open_dataset(str(data / "annotations.json"))],
                  SampleConfig(max_tokens=256, mean_tokens=96, masks_per_image=2, augment=False), seed=5)
    # (dataset, image, epoch, position) keys as MixtureSampler yields them; equal object counts per image keep
    # the mean of the ranks' means equal to the global mean
    items = [it for it in (ds[(0, i % 4, 0, i)] for i in range(40)) if len(it) == 2][:4]
    assert len(items) == 4
    return [[items[0], items[1]], [items[2], items[3]]]  # two steps, two images (one per rank) each


def _ddp(tmp_path, items, average: bool):
    p = tmp_path / "items.pt"
    torch.save(items, p)
    out = tmp_path / f"ddp-{average}.pt"
    init = tmp_path / f"init-{average}"
    mp.start_processes(_worker, args=(2, str(init), str(p), str(out), average), nprocs=2, start_method="spawn")
    return torch.load(out, weights_only=True)


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    from flip.training.data import collate
    from flip.training.loop import train_step

    items = _items(tmp_path)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for step in range(2):
        assert train_step(model, opt, scaler, collate(items[step]), torch.device("cpu"), amp=False) is not None
    single = model.state_dict()
    ddp = _ddp(tmp_path, items, average=True)
    worst = max(float((ddp[k] - single[k]).abs().max()) for k in single)
    assert worst < 1e-5, worst
    alone = _ddp(tmp_path, items, average=False)  # rank 0 stepping on its half only: must differ
    assert max(float((alone[k] - single[k]).abs().max()) for k in single) > 100 * max(worst, 1e-7)
