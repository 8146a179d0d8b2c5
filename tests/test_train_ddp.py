"""torchrun with 2 CPU processes (gloo): the same command as a single process. Slow: excluded by default."""
import subprocess
import sys

import pytest
import torch

pytest.importorskip("flip.sampler", reason="flip.sampler (fovea sampler binding) not built")


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    from tests.test_train_loop import _write_coco

    data = _write_coco(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "flip.train",
           "--data", str(data / "annotations.json"), "--out", str(out), "--steps", "3", "--batch-images", "2",
           "--masks-per-image", "2", "--max-tokens", "256", "--mean-tokens", "96", "--ckpt-every", "3", "--no-progress",
           "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 3
