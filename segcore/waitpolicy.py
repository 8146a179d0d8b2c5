"""The OpenMP wait policy of the suite's command-line entry points: one function, applied first thing in each `__main__`.

Why: torch's OpenMP workers spin-wait at every barrier. On a 2-core machine with one other busy process a worker whose
partner was descheduled burns its time slice spinning: FLIP-Tiny at 2 threads ran 3-35x slower than at 1 (docs/speed.md).
OMP_WAIT_POLICY=PASSIVE makes them sleep instead. The OpenMP runtime reads the variable once, when it loads (with
torch), so it must be set before `import torch`: this module is torch-free, and the entry points (`python -m benchmark`,
`python -m flip.training`, the scripts) call `apply_wait_policy()` before anything that imports torch.
Importing the library (`import flip`, `import baselines`) never touches the environment. Library users who want the
same policy call `segcore.waitpolicy.apply_wait_policy()` before importing torch, or export OMP_WAIT_POLICY=PASSIVE
(the Makefile does). A value already in the environment always wins.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
_applied_before_torch: bool | None = None


def apply_wait_policy() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment already sets it. Returns True when it takes effect
    (torch, and with it the OpenMP runtime, not loaded yet)."""
    global _applied_before_torch
    for k, v in WAIT_POLICY_ENV.items():
        os.environ.setdefault(k, v)
    if _applied_before_torch is None:
        _applied_before_torch = "torch" not in sys.modules
    return _applied_before_torch


def wait_policy_status() -> dict:
    """What the OpenMP runtime of this process was started with (for run metadata); set_before_torch is None when
    apply_wait_policy was never called."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "set_before_torch": bool(_applied_before_torch) if _applied_before_torch is not None else None}
