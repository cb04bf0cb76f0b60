"""The runtime one loaded model version runs on, shaped by the settings.

On CPU with ONNX Runtime the line models run as copies that split the rows
(:class:`ShardedRuntime`); with ``batch_wait_ms`` their concurrent calls share
forward passes (:class:`BatchingRuntime`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ocrq.models.builtin import model_spec
from ocrq.models.runtimes import Runtime, load_runtime
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.models.runtimes.sharded import ShardedRuntime
from ocrq.names import BATCHED_MODELS
from ocrq.settings import Settings

MAX_AUTO_COPIES = 4  # each copy keeps its own memory arena


def build_runtime(name: str, weights: Path, settings: Settings) -> Runtime:
    """The runtime for model ``name`` (one call per loaded version).

    A kind whose spec has its own ``load`` (rules, a non-ONNX format: plug-ins)
    gets what that returns; everything else is an ONNX network on the
    configured backend.
    """
    spec = model_spec(name)
    if spec.load is not None:
        return spec.load(weights)  # type: ignore[no-any-return]
    runtime = _sharded_runtime(name, weights, settings)
    if name in BATCHED_MODELS and settings.batch_wait_ms > 0:
        # One wrapper per loaded version: a canary's rows never share
        # a pass with the active version's.
        runtime = BatchingRuntime(runtime, max_wait_ms=settings.batch_wait_ms,
                                  max_batch=settings.batch_max)
    return runtime


def _sharded_runtime(name: str, weights: Path, settings: Settings) -> Runtime:
    s = settings

    def make(threads: int) -> Runtime:
        return load_runtime(s.runtime, weights, device=s.device, threads=threads,
                            fp16=s.fp16, graph_rewrite=s.graph_rewrite,
                            torch_compile=s.torch_compile)

    total = s.threads or os.cpu_count() or 1
    copies = 1
    if name in BATCHED_MODELS and s.runtime == "onnxruntime" and s.device == "cpu":
        # Many small passes (a page's lines): copies that split the rows
        # beat intra-op threads (runtimes/sharded.py).
        copies = s.cpu_copies or min(total, MAX_AUTO_COPIES)
    if copies < 2:
        return make(s.threads)
    per_copy = max(1, total // copies)
    return ShardedRuntime(lambda: make(per_copy), copies)


def runtime_place(runtime: object, fmt: str) -> tuple[str, str]:
    """(device, backend) of a loaded runtime; a plug-in's own object (rules) may say
    neither: it runs on the CPU, its backend is its weight format."""
    return str(getattr(runtime, "device", "cpu")), str(getattr(runtime, "backend", fmt))


def close_runtime(runtime: object) -> None:
    close = getattr(runtime, "close", None)  # a plug-in's own object may have none
    if close is not None:
        close()
