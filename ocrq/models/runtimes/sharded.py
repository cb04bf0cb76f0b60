"""Data-parallel inference on the CPU: a batch's rows split over several sessions.

Recognition and line direction run many small forward passes (a page's lines
fall into a dozen width buckets of a few rows each). ONNX Runtime parallelises
one pass inside each operator (intra-op threads), which pays for the detector's
one large image but not for these: on 2 cores, two single-thread sessions
that each take half of the work read a page's lines about 1.3-1.5x faster than
one session with 2 threads (BENCHMARKS.md, "CPU sessions").

``ShardedRuntime`` holds ``n`` copies of one model, each with
``threads // n`` intra-op threads. ``run`` splits a batch's rows into up to
``n`` contiguous shards and runs them at once; ``run_many`` also spreads whole
batches over the copies, largest first, so a page's small batches keep every
copy busy. Safe because every model wrapped here computes each row from that
row alone (the same reason ``BatchingRuntime`` may merge rows).

ONNX Runtime releases the GIL while it computes, so plain threads suffice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ocrq.models.runtimes.base import Runtime


class ShardedRuntime:
    """A :class:`~ocrq.models.runtimes.base.Runtime` over ``n`` copies of one model."""

    def __init__(self, make: Callable[[], Runtime], copies: int) -> None:
        if copies < 2:
            raise ValueError(f"a sharded runtime needs at least 2 copies, got {copies}")
        self.copies: list[Runtime] = [make() for _ in range(copies)]
        self.backend = self.copies[0].backend
        self.device = self.copies[0].device
        self._pool = ThreadPoolExecutor(copies, thread_name_prefix="ocrq-shard")
        self._lock = threading.Lock()
        self._next = 0  # round robin of the copy a lone row runs on

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_many([batch])[0]

    def run_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Forward passes for ``batches`` (outputs in order), spread over the copies."""
        n = len(self.copies)
        total = sum(len(b) for b in batches)
        if total == 0:
            return [self.copies[0].run(b) for b in batches]
        # Cut every batch into pieces of at most ~total/n rows, then deal the
        # pieces to the copies largest (by elements) first, each to the least
        # loaded copy: a greedy schedule that keeps the copies evenly busy.
        share = max(1, -(-total // n))
        pieces: list[tuple[int, int, int]] = []  # (batch index, start row, end row)
        for i, b in enumerate(batches):
            for start in range(0, len(b), share):
                pieces.append((i, start, min(len(b), start + share)))
        cost = [(e - s) * int(np.prod(batches[i].shape[1:])) for i, s, e in pieces]
        queues: list[list[int]] = [[] for _ in range(n)]
        load = [0] * n
        with self._lock:
            first = self._next
            self._next = (self._next + 1) % n
        for p in sorted(range(len(pieces)), key=lambda k: -cost[k]):
            c = min(range(n), key=lambda k: (load[k], (k - first) % n))
            queues[c].append(p)
            load[c] += cost[p]
        outputs: dict[int, np.ndarray] = {}

        def work(copy: int) -> None:
            runtime = self.copies[copy]
            for p in queues[copy]:
                i, s, e = pieces[p]
                outputs[p] = runtime.run(batches[i][s:e])

        busy = [c for c in range(n) if queues[c]]
        futures: list[Future[None]] = [self._pool.submit(work, c) for c in busy[1:]]
        work(busy[0])  # the caller's thread takes one queue itself
        for f in futures:
            f.result()
        out = []
        for i, b in enumerate(batches):
            parts = [outputs[p] for p, (j, _, _) in enumerate(pieces) if j == i]
            if not parts:  # an empty batch among others: what the model gives for none
                parts = [self.copies[0].run(b)]
            out.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for runtime in self.copies:
            runtime.close()


def run_many(runtime: Runtime, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``runtime.run_many`` where the runtime has one, else one pass after another."""
    many = getattr(runtime, "run_many", None)
    if many is not None:
        return list(many(batches))
    return [runtime.run(b) for b in batches]
