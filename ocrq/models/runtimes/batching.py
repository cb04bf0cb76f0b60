"""Cross-call batching: concurrent ``run`` calls of one model merged into one forward pass.

A GPU worker runs several tasks at once in one process (threads). Each task
recognises the lines of its own page in small batches; on a GPU a forward pass
of 8 rows costs about as much as one of 64, so batches of different jobs that
arrive together are concatenated along axis 0, run once, and the output rows
are split back to their callers in order.

Why this is safe at the runtime level: every model ocrq wraps here computes
each row from that row alone (recognition pads each crop to a width bucket
that depends on the crop only, see ``ocrq.stages.recognize``), so merging
changes which rows share a pass, never a row's result. Only inputs with equal
``shape[1:]`` are merged. On a GPU the number of rows can change a row's
numbers (kernels are chosen per shape), so there ``rows_per_pass`` fixes every
pass's size and short passes are zero-padded (runtimes/buckets.py).

Leader/follower, no extra thread: the first caller of a shape becomes the
leader, waits up to ``max_wait_ms`` (or until ``max_batch`` rows are queued)
for companions, takes every queued request of that shape and runs the passes;
followers sleep on the condition until their result (or the pass's exception)
is set. A new caller arriving while a leader runs its passes becomes the next
leader, so collecting the next batch overlaps with the current forward pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ocrq.models.runtimes.base import Runtime
from ocrq.models.runtimes.buckets import pad_rows
from ocrq.models.runtimes.inputs import Spec, run_images

Key = tuple[str, tuple[int, ...]]  # ("u8" pixels | "f32" normalised, shape[1:])


@dataclass
class _Request:
    batch: np.ndarray
    spec: Spec | None = None  # pixels: the model's input spec
    output: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Queue:
    requests: list[_Request] = field(default_factory=list)
    rows: int = 0
    leader: bool = False  # a caller is collecting this shape's next group


class BatchingRuntime:
    """A :class:`~ocrq.models.runtimes.base.Runtime` that merges concurrent calls."""

    def __init__(self, inner: Runtime, *, max_wait_ms: float, max_batch: int,
                 rows_per_pass: Callable[[int, int], int] | None = None) -> None:
        """``rows_per_pass(h, w)``: every pass at that many rows (zero-padded);
        None: passes of up to ``max_batch`` rows, as they come."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.inner = inner
        self.backend = inner.backend
        self.device = inner.device
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.max_batch = max_batch
        self.rows_per_pass = rows_per_pass
        self._cond = threading.Condition()
        self._queues: dict[Key, _Queue] = {}
        self._running = 0  # groups whose passes are executing now
        self._closed = False
        # Counters (under the condition's lock); read them with stats().
        self._calls = 0  # run() calls served
        self._passes = 0  # forward passes of the inner runtime
        self._rows = 0  # rows through those passes
        self._merged_calls = 0  # calls that shared a group with at least one other call
        self._max_rows = 0  # largest pass
        self._errors = 0  # groups whose passes raised

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim == 0 or batch.shape[0] == 0:
            return self.inner.run(batch)
        return self._submit(("f32", tuple(int(d) for d in batch.shape[1:])), _Request(batch))

    def run_images(self, images: np.ndarray, spec: Spec) -> np.ndarray:
        """Pixels (uint8 NHWC): merged with other calls of the same shape, as ``run``."""
        images = np.asarray(images)
        if images.ndim == 0 or images.shape[0] == 0:
            return run_images(self.inner, images, spec)
        key = ("u8", tuple(int(d) for d in images.shape[1:]))
        return self._submit(key, _Request(images, spec))

    def _pass_rows(self, key: Key) -> int:
        if self.rows_per_pass is None:
            return self.max_batch
        kind, shape = key
        h, w = (shape[0], shape[1]) if kind == "u8" else (shape[1], shape[2])
        return max(1, self.rows_per_pass(h, w))

    def _submit(self, key: Key, req: _Request) -> np.ndarray:
        batch = req.batch
        target = self._pass_rows(key)
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingRuntime is closed")
            queue = self._queues.setdefault(key, _Queue())
            queue.requests.append(req)
            queue.rows += batch.shape[0]
            self._cond.notify_all()  # a waiting leader may now have max_batch rows
            if queue.leader:
                while not req.done:  # follower: the leader fills in our result
                    self._cond.wait()
                return self._result(req)
            queue.leader = True
            deadline = time.monotonic() + self.max_wait_s
            while not self._closed and queue.rows < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            group = queue.requests
            del self._queues[key]  # the next caller of this shape leads a new group
            self._running += 1
        try:
            self._execute(group, target)
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
        return self._result(req)

    def _execute(self, group: list[_Request], size: int) -> None:
        """Run ``group`` in passes of ``size`` rows (padded, with rows_per_pass) or at
        most that; fill every request."""
        passes = rows = largest = 0
        error: BaseException | None = None
        try:
            merged = group[0].batch if len(group) == 1 else np.concatenate(
                [r.batch for r in group], axis=0)
            spec = group[0].spec
            outputs = []
            for start in range(0, merged.shape[0], size):
                chunk = merged[start : start + size]
                n = chunk.shape[0]
                if self.rows_per_pass is not None:
                    chunk = pad_rows(chunk, size)
                out = run_images(self.inner, chunk, spec) if spec is not None \
                    else self.inner.run(chunk)
                outputs.append(np.asarray(out)[:n])
                passes += 1
                rows += n
                largest = max(largest, n)
            out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)
            offset = 0
            for r in group:
                n = r.batch.shape[0]
                r.output = out[offset : offset + n]
                offset += n
        except BaseException as exc:  # every caller of the merged pass sees the failure
            error = exc
        with self._cond:
            for r in group:
                r.error = error
                r.done = True
            self._calls += len(group)
            self._passes += passes
            self._rows += rows
            self._max_rows = max(self._max_rows, largest)
            if len(group) > 1:
                self._merged_calls += len(group)
            if error is not None:
                self._errors += 1
            self._cond.notify_all()

    def warm_images(self, images: np.ndarray, spec: Spec) -> np.ndarray:
        """One pass straight to the inner runtime (warm-up at load: nobody to wait for)."""
        warm = getattr(self.inner, "warm_images", None)
        return warm(images, spec) if warm is not None else run_images(self.inner, images, spec)

    @staticmethod
    def _result(req: _Request) -> np.ndarray:
        if req.error is not None:
            raise req.error
        assert req.output is not None
        return req.output

    def stats(self) -> dict[str, int | float]:
        """Counters since start: calls, forward passes, rows, merged calls, largest pass."""
        with self._cond:
            return {"calls": self._calls, "passes": self._passes, "rows": self._rows,
                    "merged_calls": self._merged_calls, "max_rows": self._max_rows,
                    "errors": self._errors, "max_wait_ms": self.max_wait_s * 1000.0,
                    "max_batch": self.max_batch}

    def close(self) -> None:
        """Stop waiting for companions, let running passes finish, close the inner runtime.

        Leaders still collecting dispatch at once; calls after close() raise.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._running or self._queues:
                self._cond.wait(0.1)
        self.inner.close()
