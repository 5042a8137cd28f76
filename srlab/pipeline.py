"""Training batches built off the training thread, without changing which batches they are.

Every batch source of srlab (``RandomPatches``, ``StorePatches``) makes batch ``step`` as a pure
function of ``(seed, step)``: that is what makes resume and multi-GPU runs exact. So a
``DataLoader`` can build batches ``step, step + 1, ...`` in worker processes, ``prefetch`` batches
ahead per worker, into pinned memory for an asynchronous copy to the GPU, and the training loop
receives exactly the batches the synchronous loop would have built, in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class StepBatches(Dataset):
    """Item ``i`` is ``batch_fn(first + i)``: the steps ``first`` to ``last - 1``, one batch each."""

    def __init__(self, batch_fn: Callable[[int], tuple], first: int, last: int):
        self.batch_fn, self.first, self.last = batch_fn, first, last

    def __len__(self) -> int:
        return max(self.last - self.first, 0)

    def __getitem__(self, i: int) -> tuple:
        return self.batch_fn(self.first + i)


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # a worker builds one batch at a time; more threads only fight the trainer's


def auto_workers(device: torch.device, workers: int | None) -> int:
    """``workers``, or with None: 2 on a GPU (Colab's 2 cores feed it), 0 on a CPU, where worker
    processes would take the cores the training step itself computes on."""
    if workers is not None:
        if workers < 0:
            raise ValueError(f"loader_workers={workers}: use 0 (batches built in the training loop) or more")
        return workers
    return 2 if device.type == "cuda" else 0


def batch_stream(
    batch_fn: Callable[[int], tuple],
    first: int,
    last: int,
    workers: int = 0,
    pin_memory: bool = False,
    prefetch: int = 2,
) -> Iterator[tuple]:
    """Batches ``batch_fn(first)`` ... ``batch_fn(last - 1)`` in order: built here when ``workers`` is 0,
    else by a DataLoader's worker processes, ``prefetch`` batches ahead each."""
    if workers == 0:
        for step in range(first, last):
            yield batch_fn(step)
        return
    loader = DataLoader(
        StepBatches(batch_fn, first, last),
        batch_size=None,  # each item already is a batch
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch,
        worker_init_fn=_one_thread,
    )
    yield from loader


class WaitClock:
    """Seconds the training loop spent waiting for its next batch, against the loop's total."""

    def __init__(self):
        self.waiting = 0.0
        self.start = time.perf_counter()

    def next(self, batches: Iterator[tuple]) -> tuple:
        t = time.perf_counter()
        batch = next(batches)
        self.waiting += time.perf_counter() - t
        return batch

    def fraction(self) -> float:
        total = time.perf_counter() - self.start
        return self.waiting / total if total > 0 else 0.0
