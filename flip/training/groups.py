"""Dynamic redistribution of mask pixels over the 7 nested boundary-distance groups (docs/flip.md §6.4, §6.5).

The trainer owns one GroupBalancer. After every step it feeds the per-group IoU of the batch into an EMA and
writes the new split into a shared-memory tensor that DataLoader workers read when they sample an object.

Staleness: a worker reads the counts when it builds a sample, so prefetched batches (up to
num_workers·prefetch_factor of them) still use an older split. Each sample therefore carries the counts it
was actually drawn with, and the loss/IoU slicing uses those, never the current split: nothing is misaligned.
Under DDP every rank adapts its own split from its own batches (as the authors do).
"""
from __future__ import annotations

import math

import numpy as np
import torch

NUM_GROUPS = 7
GROUP_MAX_DISTANCE = (2, 4, 8, 16, 32, 64, None)  # nested: group k holds pixels with distance ≤ d_k; the last is all
MIN_PER_GROUP = 4


def default_counts(total: int = 2048, groups: int = NUM_GROUPS) -> np.ndarray:
    """Equal split with the remainder in group 0: [296, 292, …] for 2048 (docs/flip.md §6.4, step 7)."""
    counts = np.full(groups, total // groups, dtype=np.int64)
    counts[0] += total % groups
    return counts


def redistribute(ema_iou: np.ndarray, total: int = 2048, min_per_group: int = MIN_PER_GROUP) -> np.ndarray:
    """new_g = min + int((total − G·min)·d_g/Σd) with d_g = 1 − IoU_g; the leftover goes to group 0 (§6.5).

    With total 2048 and min 4 this is exactly 4 + int(2020·d_g/Σd). If every group is perfect (Σd = 0) the split
    is equal.
    """
    iou = np.asarray(ema_iou, dtype=np.float64)
    d = 1.0 - np.clip(np.nan_to_num(iou, nan=1.0), 0.0, 1.0)
    spare = total - min_per_group * len(d)
    if spare < 0:
        raise ValueError(f"{total} pixels cannot give {min_per_group} to each of {len(d)} groups")
    if d.sum() <= 0:
        return default_counts(total, len(d))
    new = min_per_group + np.floor(spare * d / d.sum()).astype(np.int64)
    new[0] += total - new.sum()
    return new


def group_ious(logits: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-group IoU of one batch, averaged over samples.

    logits, labels: (B, M) with each sample's pixels in contiguous group blocks (docs/flip.md §6.4, step 6).
    counts: (B, G) the group sizes each sample was drawn with (they may differ between samples).
    A group with 0 pixels counts as IoU 1; an empty union (no positive label, no positive prediction) as 1.
    Returns (G,) float.
    """
    b, m = labels.shape
    g = counts.shape[1]
    ends = counts.cumsum(1)  # (B, G)
    pos = torch.arange(m, device=labels.device).expand(b, m)
    gid = torch.searchsorted(ends.contiguous(), pos.contiguous(), right=True).clamp_(max=g - 1)  # (B, M)
    pred = (logits > 0).float()
    lab = (labels > 0.5).float()
    onehot = torch.nn.functional.one_hot(gid, g).float()  # (B, M, G)
    inter = torch.einsum("bm,bmg->bg", pred * lab, onehot)
    union = torch.einsum("bm,bmg->bg", torch.maximum(pred, lab), onehot)
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return iou.mean(0)


class GroupBalancer:
    """EMA of per-group IoU → group counts, published in a shared-memory tensor.

    EMA as the authors' AverageDict(memory=1000): value = Σ w_i x_i / Σ w_i with w decaying by e^{−1/memory}
    per update. `enabled=False` is the NoDynamicSampling ablation: counts stay at the equal split.
    """

    def __init__(self, total: int = 2048, groups: int = NUM_GROUPS, memory: float = 1000.0, enabled: bool = True,
                 min_per_group: int = MIN_PER_GROUP):
        self.total, self.groups, self.enabled, self.min_per_group = total, groups, enabled, min_per_group
        self.decay = math.exp(-1.0 / memory)
        self.num = np.zeros(groups)
        self.den = np.zeros(groups)
        self.shared = torch.from_numpy(default_counts(total, groups)).share_memory_()

    @property
    def ema_iou(self) -> np.ndarray:
        return np.where(self.den > 0, self.num / np.maximum(self.den, 1e-300), np.nan)

    def counts(self) -> np.ndarray:
        return self.shared.numpy().copy()

    def update(self, batch_group_iou) -> np.ndarray:
        x = np.asarray(batch_group_iou, dtype=np.float64)
        if x.shape != (self.groups,) or not np.all(np.isfinite(x)):
            return self.counts()  # a bad batch never corrupts the statistics
        self.num = self.num * self.decay + x
        self.den = self.den * self.decay + 1.0
        if self.enabled:
            self.shared.copy_(torch.from_numpy(redistribute(self.ema_iou, self.total, self.min_per_group)))
        return self.counts()

    def state_dict(self) -> dict:
        # tensors, not numpy arrays: checkpoints load with weights_only=True
        return {"num": torch.from_numpy(self.num.copy()), "den": torch.from_numpy(self.den.copy()),
                "counts": torch.as_tensor(np.asarray(self.counts()), dtype=torch.int64), "enabled": bool(self.enabled)}

    def load_state_dict(self, state: dict) -> None:
        self.num = np.array(state["num"], dtype=np.float64)
        self.den = np.array(state["den"], dtype=np.float64)
        self.shared.copy_(torch.as_tensor(np.asarray(state["counts"]), dtype=torch.int64))
