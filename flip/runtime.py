"""Thread policy for CPU inference: extra threads never make FLIP slower, idle or on a shared, loaded machine.

Why: hundreds of small torch ops per object, each ending in an OpenMP barrier that waits for a descheduled partner,
left 2 threads 15-40 % slower than 1 under load, even with the passive wait policy (which the command-line entry
points set before torch loads: segcore/waitpolicy.py). So FLIP inference runs its ops on one intra-op thread
(`intra_op_threads(1)`, restored on exit) and spends the thread budget on independent work instead: query chunks of the
pixel decoder go to `parallel_map`, a work queue served by the calling thread and budget−1 helpers. A descheduled
helper just takes fewer chunks; nobody waits at a barrier except for the last chunk.
Nothing here changes global torch state beyond the block that asked for it.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable


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
