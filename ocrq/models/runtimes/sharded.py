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
copy busy; ``stream`` hands back each piece's output as soon as it is done, so
the caller's thread can use one (decode a line) while the copies run the next.
Rows are also cut into pieces of at most ``piece_elements`` input numbers: a
larger pass runs slower per row on a CPU where its activations outgrow a core's
cache (one thread, bench/graph_rewrite.py: the line-direction model 0.50 ms a
row in passes of 2 rows, 0.73 in passes of 64; the second recogniser ~15% more
per column at 6,144 columns than at 384; the first, rewritten, about flat), and
small pieces let the caller start on outputs sooner.

Safe because every model wrapped here computes each row from that row alone
(the same reason ``BatchingRuntime`` may merge rows). ONNX Runtime releases the
GIL while it computes, so plain threads suffice.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ocrq.models.runtimes.base import Runtime

# 384 columns of a 48-px, 3-channel crop batch (see the module's docstring).
PIECE_ELEMENTS = 48 * 384 * 3

Piece = tuple[int, int, int]  # (batch index, start row, end row)


class ShardedRuntime:
    """A :class:`~ocrq.models.runtimes.base.Runtime` over ``n`` copies of one model."""

    def __init__(self, make: Callable[[], Runtime], copies: int,
                 piece_elements: int = PIECE_ELEMENTS) -> None:
        if copies < 2:
            raise ValueError(f"a sharded runtime needs at least 2 copies, got {copies}")
        self.copies: list[Runtime] = [make() for _ in range(copies)]
        self.backend = self.copies[0].backend
        self.device = self.copies[0].device
        self._pool = ThreadPoolExecutor(copies, thread_name_prefix="ocrq-shard")
        self._lock = threading.Lock()
        self._next = 0  # round robin of the copy a lone row runs on
        self.piece_elements = piece_elements

    def _pieces(self, batches: Sequence[np.ndarray]) -> tuple[list[Piece], list[int]]:
        """Every batch cut into pieces of at most ~total/n rows and at most
        ``piece_elements`` numbers (one row at least), with each piece's cost."""
        share = max(1, -(-sum(len(b) for b in batches) // len(self.copies)))
        pieces: list[Piece] = []
        cost: list[int] = []
        for i, b in enumerate(batches):
            per_row = int(np.prod(b.shape[1:]))
            rows = max(1, min(share, self.piece_elements // max(1, per_row)))
            for s in range(0, len(b), rows):
                pieces.append((i, s, min(len(b), s + rows)))
                cost.append((pieces[-1][2] - s) * per_row)
        return pieces, cost

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_many([batch])[0]

    def run_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Forward passes for ``batches`` (outputs in order), spread over the copies."""
        n = len(self.copies)
        total = sum(len(b) for b in batches)
        if total == 0:
            return [self.copies[0].run(b) for b in batches]
        # Deal the pieces to the copies largest (by elements) first, each to the
        # least loaded copy: a greedy schedule that keeps the copies evenly busy.
        pieces, cost = self._pieces(batches)
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

    def stream(self, batches: Sequence[np.ndarray],
               prepare: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(batch index, first row, the output for the piece's rows) of each piece
        as soon as its pass is done, in the order they finish. The copies pull
        pieces, largest first, from one queue on the pool's threads, so the
        caller's thread is free to use each output while the next passes run: its
        Python would otherwise leave a core idle. A piece comes back alone, not
        when its whole batch is done (a page's short lines make one batch of
        hundreds of rows). ``prepare`` (normalisation) runs on the copies' threads."""
        ready = prepare or (lambda b: b)
        for i, b in enumerate(batches):
            if len(b) == 0:  # what the model gives for none
                yield i, 0, self.copies[0].run(ready(b))
        pieces, cost = self._pieces(batches)
        pieces = [pieces[k] for k in sorted(range(len(pieces)), key=lambda k: -cost[k])]
        todo: deque[int] = deque(range(len(pieces)))
        done: queue.SimpleQueue[tuple[int, object] | None] = queue.SimpleQueue()
        stop = threading.Event()
        with self._lock:  # concurrent callers start on different copies
            first = self._next
            self._next = (self._next + 1) % len(self.copies)

        def work(copy: int) -> None:
            try:
                while not stop.is_set():
                    try:
                        p = todo.popleft()  # atomic: the copies share one queue
                    except IndexError:
                        break
                    i, s, e = pieces[p]
                    runtime = self.copies[(first + copy) % len(self.copies)]
                    done.put((p, runtime.run(ready(batches[i][s:e]))))
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                done.put((-1, exc))
            finally:
                done.put(None)

        workers = [self._pool.submit(work, c) for c in range(min(len(self.copies), len(pieces)))]
        running = len(workers)
        try:
            while running:
                item = done.get()
                if item is None:
                    running -= 1
                    continue
                p, out = item
                if isinstance(out, BaseException):
                    raise out
                yield pieces[p][0], pieces[p][1], np.asarray(out)
        finally:
            stop.set()  # a caller that stops early: the copies take no more pieces
            for w in workers:
                w.result()

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
