"""A runtime whose every pass runs at a bucket shape (runtimes/buckets.py).

Wraps the GPU runtime of one loaded model version: pads inputs to their
bucket, cuts them into passes of the bucket's fixed row count (unless an inner
:class:`~ocrq.models.runtimes.batching.BatchingRuntime` does that, after
merging concurrent calls), crops the output back, and warms every bucket when
the model loads so that the first page is as fast as the fiftieth.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ocrq.models.runtimes.base import Runtime
from ocrq.models.runtimes.buckets import Buckets, pad_rows
from ocrq.models.runtimes.inputs import Spec, run_images

log = logging.getLogger(__name__)


class BucketedRuntime:
    def __init__(self, inner: Runtime, buckets: Buckets, *, pad_rows: bool) -> None:
        """``pad_rows``: this wrapper makes the fixed-size passes (False when the
        inner runtime is a BatchingRuntime with ``rows_per_pass``)."""
        self.inner = inner
        self.buckets = buckets
        self.backend = inner.backend
        self.device = inner.device
        self._pad_rows = pad_rows
        self.warm_s = 0.0  # how long warm() took

    def run_images(self, images: np.ndarray, spec: Spec) -> np.ndarray:
        padded, hw = self.buckets.pad(np.asarray(images))
        bhw = (int(padded.shape[1]), int(padded.shape[2]))
        out = self._passes(padded, bhw, lambda b: run_images(self.inner, b, spec))
        return self.buckets.crop(out, hw, bhw)

    def run(self, batch: np.ndarray) -> np.ndarray:
        padded, hw = self.buckets.pad_nchw(np.asarray(batch, np.float32))
        bhw = (int(padded.shape[2]), int(padded.shape[3]))
        out = self._passes(padded, bhw, self.inner.run)
        return self.buckets.crop(out, hw, bhw)

    def _passes(self, batch: np.ndarray, hw: tuple[int, int], fn: object) -> np.ndarray:
        if not self._pad_rows or batch.shape[0] == 0:
            return np.asarray(fn(batch))  # type: ignore[operator]
        rows = self.buckets.batch_size(*hw)
        outs = []
        for start in range(0, batch.shape[0], rows):
            chunk = batch[start : start + rows]
            out = np.asarray(fn(pad_rows(chunk, rows)))  # type: ignore[operator]
            outs.append(out[: chunk.shape[0]])
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def warm(self, spec: Spec) -> float:
        """Run every bucket shape once (kernels chosen, graphs captured); seconds."""
        t0 = time.perf_counter()
        warm = getattr(self.inner, "warm_images", None)
        for rows, h, w in self.buckets.warm_shapes():
            images = np.zeros((rows, h, w, 3), np.uint8)
            if warm is not None:  # straight to the device runtime: no batching wait
                warm(images, spec)
            else:
                self.run_images(images, spec)
        self.warm_s = time.perf_counter() - t0
        return self.warm_s

    def stats(self) -> dict[str, object]:
        inner = getattr(self.inner, "stats", None)
        return {**(inner() if inner else {}), "warm_s": round(self.warm_s, 3),
                "buckets": len(self.buckets.warm_shapes())}

    def close(self) -> None:
        self.inner.close()
