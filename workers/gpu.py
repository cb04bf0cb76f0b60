"""GPU worker: one process per GPU, prefetch 1, models preloaded at start.

    python -m workers.gpu [-Q gpu] [-c 1]

On a machine without a usable CUDA device it falls back to the CPU with a
warning, so the same entry point runs in CI and on laptops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ocrq.settings import Settings
from workers.common import parser, run_worker

log = logging.getLogger("workers.gpu")


def cuda_available() -> bool:
    try:
        import torch  # optional: the gpu extra

        return bool(torch.cuda.is_available())
    except Exception:  # not installed or broken CUDA libs: not usable either way
        pass
    try:
        import onnxruntime

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
    args = parser("gpu", s.queue_gpu, 1).parse_args(argv)
    # Prefetch multiplier 1 comes from CeleryConfig: a GPU worker holds one message at a time.
    run_worker("gpu", s, args)


if __name__ == "__main__":
    main()
