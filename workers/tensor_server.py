"""The tensor server process: forward passes only, for the GPU worker's feeders.

    python -m workers.tensor_server --socket PATH [--exit-with PID]

``python -m workers.gpu`` starts it (and restarts it if it dies); it can also
run on its own, beside feeders started with ``OCRQ_RUNTIME=remote
OCRQ_TENSOR_SOCKET=PATH``. It picks its device itself: torch on CUDA when a
GPU is usable, else ONNX Runtime on the CPU (CI, laptops), so the same entry
point runs everywhere. Concurrent calls of all connections are merged
(``OCRQ_BATCH_WAIT_MS``, default 3 ms here).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence

from ocrq.models.serving.server import TensorServer
from ocrq.observability import logs
from ocrq.settings import Settings

log = logging.getLogger("workers.tensor_server")
DEFAULT_BATCH_WAIT_MS = 3.0
PARENT_POLL_S = 1.0


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


def torch_cuda() -> bool:
    try:
        import torch  # optional: the gpu extra

        return bool(torch.cuda.is_available())
    except Exception:  # no torch, or torch without a usable CUDA
        return False


def server_settings(s: Settings) -> Settings:
    """The settings the server runs its models with: its own device and backend."""
    if not cuda_available():
        log.warning("no CUDA device available: tensor server running on CPU")
        s = s.with_(device="cpu", runtime="onnxruntime", fp16=False)
    else:
        device = s.device if s.device.startswith("cuda") else "cuda"
        # torch on CUDA (buckets, CUDA graphs); ONNX Runtime's CUDA provider only
        # where torch cannot reach the GPU.
        s = s.with_(device=device, runtime="torch" if torch_cuda() else "onnxruntime")
    if s.batch_wait_ms < 0:  # not set: merge the connections' calls, waiting a few ms
        s = s.with_(batch_wait_ms=DEFAULT_BATCH_WAIT_MS)
    return s


def _watch_parent(pid: int, stop: threading.Event) -> None:
    """Stop when the GPU worker that started us is gone (never an orphan GPU holder)."""
    while not stop.wait(PARENT_POLL_S):
        if os.getppid() != pid:
            log.warning("parent %d gone: tensor server stopping", pid)
            stop.set()


def main(argv: Sequence[str] | None = None) -> None:
    s = Settings.from_env()
    p = argparse.ArgumentParser(prog="python -m workers.tensor_server",
                                description="ocrq tensor server (forward passes only)")
    p.add_argument("--socket", default=s.tensor_socket, required=not s.tensor_socket,
                   help="Unix socket path to listen on (default OCRQ_TENSOR_SOCKET)")
    p.add_argument("--exit-with", type=int, default=0,
                   help="stop when the process with this pid (our parent) exits")
    p.add_argument("-l", "--loglevel", default="INFO")
    args = p.parse_args(argv)
    logs.configure(s.log_format, args.loglevel, service="tensor_server")
    server = TensorServer(args.socket, server_settings(s))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_with:
        threading.Thread(target=_watch_parent, args=(args.exit_with, stop), daemon=True,
                         name="parent-watch").start()
    server.start()
    try:
        while not stop.wait(PARENT_POLL_S):
            pass
    finally:
        log.info("tensor server stopping")
        server.close()


if __name__ == "__main__":
    main()
