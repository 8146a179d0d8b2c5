"""Packed token batches: many objects in one forward pass, no padding (docs/flip.md §4.2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


def _to_chw_float(p, patch_size: int, device) -> torch.Tensor:
    """uint8 HWC (n,p,p,3) from the sampler → float CHW in [0,1]; float CHW (n,3,p,p) is taken as is."""
    if isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 4 and p.shape[1:] == (patch_size, patch_size, 3) \
            and torch.device(device).type == "cpu":
        # NumPy for the CPU case: the same IEEE float32 division by 255, without ~5 torch dispatches per size
        return torch.from_numpy(np.ascontiguousarray(p.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0))
    t = torch.as_tensor(np.asarray(p)) if not isinstance(p, torch.Tensor) else p
    if t.numel() == 0:
        return torch.zeros((0, 3, patch_size, patch_size), dtype=torch.float32, device=device)
    if t.dtype == torch.uint8:
        if t.ndim != 4 or t.shape[1:] != (patch_size, patch_size, 3):
            raise ValueError(f"uint8 patches of size {patch_size} must be (n, {patch_size}, {patch_size}, 3), got {tuple(t.shape)}")
        return t.to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    if t.ndim != 4 or t.shape[1:] != (3, patch_size, patch_size):
        raise ValueError(f"float patches of size {patch_size} must be (n, 3, {patch_size}, {patch_size}), got {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32)


@dataclass
class TokenBatch:
    """Patches of B objects. Per patch size s: patches[s] (N_s, 3, p, p) float in [0,1] and coords[s] (N_s, 2),
    object-major inside each size (object 0's patches first). counts (B, S) = patches per object and size.
    positions (B, 6) = each object's Gaussian in model units."""

    patches: list
    coords: list
    counts: np.ndarray
    positions: torch.Tensor

    @property
    def num_objects(self) -> int:
        return int(self.counts.shape[0])

    @property
    def tokens_per_object(self) -> np.ndarray:
        return self.counts.sum(1)

    def to(self, device) -> "TokenBatch":
        return TokenBatch([p.to(device) for p in self.patches], [c.to(device) for c in self.coords], self.counts,
                          self.positions.to(device))

    @classmethod
    def from_objects(cls, patches: Sequence[Sequence], coords: Sequence[Sequence], positions,
                     patch_sizes: Sequence[int], device="cpu") -> "TokenBatch":
        """patches[b][s], coords[b][s] for object b and patch size s (uint8 HWC or float CHW; coords (n, 2))."""
        nb, ns = len(patches), len(patch_sizes)
        if nb == 1 and torch.device(device).type == "cpu" and len(patches[0]) == ns and len(coords[0]) == ns \
                and all(isinstance(p, np.ndarray) and p.dtype == np.uint8 for p in patches[0]):
            return cls._one_cpu_object(patches[0], coords[0], positions, patch_sizes)
        if len(coords) != nb:
            raise ValueError(f"{nb} patch lists but {len(coords)} coordinate lists")
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float32), device=device).reshape(-1, 6)
        if pos.shape[0] != nb:
            raise ValueError(f"{nb} objects but {pos.shape[0]} positions")
        counts = np.zeros((nb, ns), dtype=np.int64)
        out_p, out_c = [], []
        for s, p in enumerate(patch_sizes):
            ps, cs = [], []
            for b in range(nb):
                if len(patches[b]) != ns or len(coords[b]) != ns:
                    raise ValueError(f"object {b}: expected {ns} patch sizes, got {len(patches[b])} patch and {len(coords[b])} coordinate arrays")
                t = _to_chw_float(patches[b][s], p, device)
                c = torch.as_tensor(np.asarray(coords[b][s], dtype=np.float32), device=device).reshape(-1, 2)
                if t.shape[0] != c.shape[0]:
                    raise ValueError(f"object {b}, patch size {p}: {t.shape[0]} patches but {c.shape[0]} coordinates")
                counts[b, s] = t.shape[0]
                ps.append(t)
                cs.append(c)
            out_p.append(torch.cat(ps) if nb > 1 else ps[0])
            out_c.append(torch.cat(cs) if nb > 1 else cs[0])
        return cls(out_p, out_c, counts, pos)

    @classmethod
    def _one_cpu_object(cls, patches, coords, positions, patch_sizes) -> "TokenBatch":
        """from_objects for one object of sampler output on the CPU: NumPy end to end (~5 torch dispatches per size
        saved; a small object's whole model run is ~0.5 ms). Same checks, same float32 values."""
        out_p, out_c, counts = [], [], np.zeros((1, len(patch_sizes)), dtype=np.int64)
        for s, (p, c, size) in enumerate(zip(patches, coords, patch_sizes)):
            t = _to_chw_float(p, size, "cpu")
            c = np.asarray(c, dtype=np.float32).reshape(-1, 2)
            if t.shape[0] != c.shape[0]:
                raise ValueError(f"object 0, patch size {size}: {t.shape[0]} patches but {c.shape[0]} coordinates")
            counts[0, s] = t.shape[0]
            out_p.append(t)
            out_c.append(torch.from_numpy(c))
        pos = torch.from_numpy(np.asarray(positions, dtype=np.float32).reshape(-1, 6))
        if pos.shape[0] != 1:
            raise ValueError(f"1 object but {pos.shape[0]} positions")
        return cls(out_p, out_c, counts, pos)


def object_major_index(counts: np.ndarray, num_registers: int) -> tuple[np.ndarray, np.ndarray]:
    """Destination of every size-major token (sizes in order, then B·R registers) in the object-major packed layout
    [obj0: p1…, p2…, …, registers | obj1: …]. Returns (dest (T,), seqlens (B,))."""
    b, s = counts.shape
    seqlens = counts.sum(1) + num_registers
    obj_start = np.concatenate([[0], np.cumsum(seqlens)[:-1]])
    within = np.concatenate([np.zeros((b, 1), np.int64), np.cumsum(counts, 1)[:, :-1]], 1)  # offset of size s in object b
    parts = []
    for si in range(s):
        n = counts[:, si]
        if n.sum() == 0:
            continue
        start = np.repeat(obj_start + within[:, si], n)
        first = np.repeat(np.concatenate([[0], np.cumsum(n)[:-1]]), n)
        parts.append(start + np.arange(n.sum()) - first)
    reg = (obj_start + counts.sum(1))[:, None] + np.arange(num_registers)[None, :]
    parts.append(reg.reshape(-1))
    return np.concatenate(parts).astype(np.int64), seqlens
