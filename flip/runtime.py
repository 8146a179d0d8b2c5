"""Thread policy for CPU inference: extra threads never make FLIP slower, idle or on a shared, loaded machine.

Why: torch's OpenMP workers spin-wait at every barrier. On a 2-core machine with one other busy process, a worker
whose partner was descheduled burns its time slice spinning: FLIP-Tiny at 2 threads ran 3-35x slower than at 1 (measured
here). A passive wait policy removes the spinning but not the barriers: hundreds of small ops per object, each ending in a
barrier that waits for a descheduled partner, still left 2 threads 15-40 % slower than 1 under load.

The policy, in two parts:
1. `apply_wait_policy()` (torch-free, called first thing by `import flip`, `python -m benchmark`, the trainer and the
   scripts): OMP_WAIT_POLICY=PASSIVE as an environment default, so that every torch op that does use several OpenMP
   threads (baselines, training) sleeps instead of spinning. It only sets a default: a value the user exported wins.
   It must run before the OpenMP runtime is loaded (i.e. before `import torch`); `wait_policy_status()` says if it did.
2. FLIP inference runs its ops on one intra-op thread (`intra_op_threads(1)`, restored on exit) and spends the thread
   budget on independent work instead: query chunks of the pixel decoder go to `parallel_map`, a work queue served by
   the calling thread and budget−1 helpers. A descheduled helper just takes fewer chunks; nobody waits at a barrier
   except for the last chunk.
Nothing here changes global torch state beyond the block that asked for it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

WAIT_POLICY_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
_applied_before_torch: bool | None = None


def apply_wait_policy() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment already sets it. Returns True when it takes effect
    (the OpenMP runtime, loaded with torch, reads it once at load time)."""
    global _applied_before_torch
    for k, v in WAIT_POLICY_ENV.items():
        os.environ.setdefault(k, v)
    if _applied_before_torch is None:
        _applied_before_torch = "torch" not in sys.modules
    return _applied_before_torch


def wait_policy_status() -> dict:
    """What the OpenMP runtime of this process was started with (for run metadata)."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "set_before_torch": bool(_applied_before_torch) if _applied_before_torch is not None else None}


@contextlib.contextmanager
def intra_op_threads(n: int):
    """torch intra-op threads = n for the calling thread inside the block, then the previous value again."""
    import torch

    prev = torch.get_num_threads()
    if prev != n:
        torch.set_num_threads(n)
    try:
        yield prev
    finally:
        if prev != n:
            torch.set_num_threads(prev)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _single_thread_worker():
    import torch

    torch.set_num_threads(1)  # OpenMP/MKL thread counts are per calling thread: one for each helper


def _pool(helpers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(helpers)
        if pool is None:
            pool = _pools[helpers] = ThreadPoolExecutor(helpers, thread_name_prefix="flip-worker",
                                                       initializer=_single_thread_worker)
        return pool


def parallel_map(fn: Callable, items: Iterable, workers: int) -> list:
    """[fn(x) for x in items] on `workers` threads (the caller plus workers−1 pooled helpers), in item order.
    Items are taken from one shared queue, so a helper that gets no CPU time just takes fewer items.
    fn must be thread-safe; the first exception is raised after all taken items finished."""
    items = list(items)
    workers = max(1, min(int(workers), len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    import torch

    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()  # both are per thread
    results: list = [None] * len(items)
    errors: list = []
    lock = threading.Lock()
    next_index = [0]

    def drain():
        while True:
            with lock:
                i = next_index[0]
                if i >= len(items) or errors:
                    return
                next_index[0] = i + 1
            try:
                with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                    results[i] = fn(items[i])
            except BaseException as e:  # re-raised in the caller
                with lock:
                    errors.append(e)
                return

    futures = [_pool(workers - 1).submit(drain) for _ in range(workers - 1)]
    drain()
    for f in futures:
        f.result()
    if errors:
        raise errors[0]
    return results
