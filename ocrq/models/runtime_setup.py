"""The runtime one loaded model version runs on, shaped by the settings.

On CPU with ONNX Runtime the line models run as copies that split the rows
(:class:`ShardedRuntime`); with ``batch_wait_ms`` their concurrent calls share
forward passes (:class:`BatchingRuntime`). On a GPU every model runs at shape
buckets (:class:`BucketedRuntime`, warmed at load), every model's concurrent
calls are merged (pages for detection too), and each pass has the bucket's
fixed row count, so a page's text never depends on what else is in flight.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ocrq.models.builtin import model_spec
from ocrq.models.runtimes import Runtime, load_runtime
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.models.runtimes.bucketed import BucketedRuntime
from ocrq.models.runtimes.buckets import Buckets
from ocrq.models.runtimes.cost import meter_gpu
from ocrq.models.runtimes.sharded import ShardedRuntime
from ocrq.names import BATCHED_MODELS, ModelKind
from ocrq.settings import Settings

MAX_AUTO_COPIES = 4  # each copy keeps its own memory arena
BUCKET_MODES = ("auto", "on", "off")
log = logging.getLogger(__name__)


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
    spec = _input_spec(weights)
    buckets = Buckets.from_spec(spec) if _bucketed(runtime, settings) else None
    batching = settings.batch_wait_ms > 0 and (name in BATCHED_MODELS or buckets is not None)
    if batching:
        # One wrapper per loaded version: a canary's rows never share
        # a pass with the active version's.
        runtime = BatchingRuntime(runtime, max_wait_ms=settings.batch_wait_ms,
                                  max_batch=settings.batch_max,
                                  rows_per_pass=buckets.batch_size if buckets else None)
    if buckets is not None:
        bucketed = BucketedRuntime(runtime, buckets, pad_rows=not batching)
        seconds = bucketed.warm(spec)
        log.info("%s %s: %d bucket shapes warmed in %.1f s", name, weights,
                 len(buckets.warm_shapes()), seconds)
        return meter_gpu(bucketed)  # after the warm-up: no step pays for that
    return meter_gpu(runtime)  # a step's gpu_s (runtimes/cost.py); CPU: unchanged


def _bucketed(runtime: Runtime, settings: Settings) -> bool:
    mode = settings.shape_buckets
    if mode not in BUCKET_MODES:
        raise ValueError(f"OCRQ_SHAPE_BUCKETS must be one of {', '.join(BUCKET_MODES)}, "
                         f"not {mode!r}")
    return mode == "on" or (mode == "auto" and str(runtime.device).startswith("cuda"))


def _input_spec(weights: Path) -> dict[str, object]:
    """The manifest's input spec beside the weights ({} when there is none)."""
    manifest = Path(weights).parent / "manifest.json"
    if not manifest.is_file():
        return {}
    return dict(json.loads(manifest.read_text(encoding="utf-8")).get("input") or {})


def _sharded_runtime(name: str, weights: Path, settings: Settings) -> Runtime:
    s = settings
    # On a GPU the recogniser's output is reduced there (stages/ctc.py): copying
    # 1 MB a line off the device was what a recognition pass cost (BENCHMARKS.md).
    topk = s.ctc_topk if name in (ModelKind.STR, ModelKind.STR2) and s.runtime == "torch" \
        and s.device != "cpu" else 0

    def make(threads: int) -> Runtime:
        return load_runtime(s.runtime, weights, device=s.device, threads=threads,
                            fp16=s.fp16, graph_rewrite=s.graph_rewrite,
                            torch_compile=s.torch_compile, cuda_graphs=s.cuda_graphs,
                            cudnn=s.cudnn, ctc_topk=topk, tensor_socket=s.tensor_socket,
                            tensor_timeout_s=s.tensor_timeout_s, tensor_wait_s=s.tensor_wait_s)

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
