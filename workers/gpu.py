"""GPU worker: one process per GPU, prefetch 1, models preloaded at start.

    python -m workers.gpu [-Q gpu] [-c THREADS]

One process runs ``-c`` tasks at once on threads (default
``OCRQ_GPU_WORKER_THREADS``), so the recognition batches of several jobs meet
in the batching runtime and share one forward pass (``OCRQ_BATCH_WAIT_MS``,
default 3 ms here). On a machine without a usable CUDA device it falls back
to the CPU with a warning, so the same entry point runs in CI and on laptops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ocrq.settings import Settings
from workers.common import THREADS_POOL, parser, run_worker

log = logging.getLogger("workers.gpu")
DEFAULT_BATCH_WAIT_MS = 3.0


def cuda_available() -> bool:
    try:
        import torch  # optional: the gpu extra

        return bool(torch.cuda.is_available())
    except Exception:  # not installed or broken CUDA libs: not usable either way
        pass
    try:
        import onnxruntime  # heavy: only to ask for its CUDA provider

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = Settings.from_env()
    if s.device == "cpu":
        s = s.with_(device="cuda")  # the GPU worker's default device
    if not cuda_available():
        log.warning("no CUDA device available: GPU worker serving on CPU")
        s = s.with_(device="cpu", fp16=False)
    args = parser("gpu", s.queue_gpu, s.gpu_worker_threads, "threads pool, one process",
                  "tasks run at once on threads (their batches share forward passes)",
                  ).parse_args(argv)
    if args.concurrency <= 1:  # one task at a time: no call could join, never wait
        s = s.with_(batch_wait_ms=0.0)
    elif s.batch_wait_ms < 0:  # not set: merge concurrent batches, waiting a few ms at most
        s = s.with_(batch_wait_ms=DEFAULT_BATCH_WAIT_MS)
    # Prefetch multiplier 1 (CeleryConfig): each thread holds at most one message.
    run_worker("gpu", s, args, pool=THREADS_POOL)


if __name__ == "__main__":
    main()
