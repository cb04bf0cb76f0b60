"""GPU worker: one tensor server process + a prefork pool of feeder processes.

    python -m workers.gpu [-Q gpu] [-c FEEDERS] [--inprocess]

Why two kinds of process (issue 11): the models need a few ms of GPU per
page; the rest (decode, resize, post-processing, crops, CTC decoding) is host
work, and one Python process doing it all keeps the GPU idle. So:

- the tensor server (``python -m workers.tensor_server``, started here and
  restarted with a capped backoff if it dies) owns the GPU and only runs
  forward passes; the concurrent calls of all feeders meet in its batching
  runtimes and share passes (detection across pages, recognition across
  jobs);
- the Celery prefork children (``-c``, default: every core) consume the gpu
  queue, do the host work of their page and reach the server over its Unix
  socket (``OCRQ_RUNTIME=remote``, ``OCRQ_TENSOR_SOCKET``).

The worker still scales as a container: one per GPU, each with its own
server. Without a usable CUDA device the server runs ONNX Runtime on the CPU,
so the same entry point runs in CI and on laptops. ``--inprocess``
(``OCRQ_GPU_WORKER_MODE=inprocess``) keeps the old shape for comparison: one
process running ``-c`` tasks on threads (default ``OCRQ_GPU_WORKER_THREADS``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocrq.errors import OcrqError
from ocrq.models.serving.client import LOAD_TIMEOUT_S, hello
from ocrq.pipeline.app import CeleryConfig
from ocrq.settings import Settings
from workers.common import THREADS_POOL, parser, run_worker, split_threads
from workers.tensor_server import cuda_available

log = logging.getLogger("workers.gpu")
DEFAULT_BATCH_WAIT_MS = 3.0
GPU_WORKER_MODES = ("server", "inprocess")
HELLO_TIMEOUT_S = 120.0  # the server answers HELLO before it loads any model
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # restarts of a server that keeps dying
WAIT_SHARE = 3  # a model call waits for a gone server a third of the soft limit at most
STABLE_S = 60.0  # up this long: the next death starts the backoff over
STOP_GRACE_S = 15.0


class ServerProcess:
    """The tensor server child: started, waited for, supervised, stopped."""

    def __init__(self, socket_path: str, hello_timeout_s: float = HELLO_TIMEOUT_S,
                 backoff_s: Sequence[float] = BACKOFF_S) -> None:
        self.socket_path = socket_path
        self.hello_timeout_s = hello_timeout_s
        self.backoff_s = tuple(backoff_s) or BACKOFF_S
        self.popen: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {}
        self.restarts = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> dict[str, Any]:
        """Start the server and wait for its HELLO; then supervise it on a thread."""
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="tensor-server-watch",
                                         daemon=True)
        self._watcher.start()
        return self.facts

    def _spawn(self) -> None:
        argv = [sys.executable, "-m", "workers.tensor_server", "--socket", self.socket_path,
                "--exit-with", str(os.getpid())]
        # Its own session: a Ctrl-C in the terminal must not kill it before Celery's
        # warm shutdown has let the running tasks finish their passes.
        self.popen = subprocess.Popen(argv, start_new_session=True)
        self.facts = self._wait_hello(self.popen)
        log.info("tensor server pid %d ready on %s: %s on %s", self.popen.pid,
                 self.socket_path, self.facts.get("backend"), self.facts.get("device"))

    def _wait_hello(self, popen: subprocess.Popen[bytes]) -> dict[str, Any]:
        deadline = time.monotonic() + self.hello_timeout_s
        while True:
            if popen.poll() is not None:
                raise OcrqError(f"tensor server exited with {popen.returncode} at start")
            try:
                return hello(self.socket_path, timeout_s=5.0)
            except (OSError, OcrqError) as exc:
                if time.monotonic() > deadline:
                    popen.kill()
                    raise OcrqError(f"tensor server gave no HELLO within "
                                    f"{self.hello_timeout_s:.0f} s: {exc}") from exc
                time.sleep(0.1)

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            assert self.popen is not None
            started = time.monotonic()
            rc = self.popen.wait()
            if self._stop.is_set():
                return
            if time.monotonic() - started > STABLE_S:
                failures = 0
            delay = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
            failures += 1
            log.error("tensor server exited with %s; restarting in %.0f s", rc, delay)
            if self._stop.wait(delay):
                return
            try:
                self._spawn()
                self.restarts += 1
            except (OSError, OcrqError) as exc:
                log.error("tensor server restart failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        p = self.popen
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = Settings.from_env()
    p = parser("gpu", s.queue_gpu, 0, "tensor server + prefork feeders",
               "feeder processes (default: every core); with --inprocess, task threads "
               "(default OCRQ_GPU_WORKER_THREADS)")
    p.add_argument("--inprocess", action="store_true",
                   default=s.gpu_worker_mode == "inprocess",
                   help="the old shape: one process, models on its own device, -c threads")
    args = p.parse_args(argv)
    if s.gpu_worker_mode not in GPU_WORKER_MODES:  # a typo must not pick a shape silently
        raise SystemExit(f"OCRQ_GPU_WORKER_MODE must be one of {', '.join(GPU_WORKER_MODES)}, "
                         f"not {s.gpu_worker_mode!r}")
    if args.inprocess:
        run_inprocess(s, args)
    else:
        run_with_server(s, args)


def run_with_server(s: Settings, args: argparse.Namespace) -> None:
    if args.concurrency <= 0:
        args.concurrency = os.cpu_count() or 1
    own_dir = "" if s.tensor_socket else tempfile.mkdtemp(prefix="ocrq-tensor-")  # 0700
    socket_path = s.tensor_socket or str(Path(own_dir) / "tensor.sock")
    server = ServerProcess(socket_path, backoff_s=restart_backoff(s))
    try:
        facts = server.start()
        # The feeders' models are RemoteRuntimes: no batching wait here (the server
        # merges), no buckets here (the server's policy comes with each LOAD).
        feeders = s.with_(runtime="remote", tensor_socket=socket_path,
                          device=str(facts.get("device", "cpu")), batch_wait_ms=0.0,
                          shape_buckets="off", fp16=bool(facts.get("fp16", False)),
                          tensor_wait_s=feeder_wait_s(s))
        # Children read the socket through Settings.from_env() in load_runtime; and how
        # long a call waits for a server gone (then its step is given back: well
        # within the step's soft time limit, which a soak run saw it spend).
        os.environ["OCRQ_TENSOR_SOCKET"] = socket_path
        os.environ["OCRQ_TENSOR_WAIT_S"] = str(feeder_wait_s(s))
        # A feeder preloads its models in worker_process_init: LOADs that may wait
        # for the server's first load (every bucket warmed, on a GPU) while Celery
        # would kill a child not up within 4 s.
        run_worker("gpu", split_threads(feeders, args.concurrency), args,
                   conf={"worker_proc_alive_timeout": LOAD_TIMEOUT_S})
    finally:
        server.stop()
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


def restart_backoff(s: Settings) -> tuple[float, ...]:
    """OCRQ_TENSOR_RESTART_BACKOFF_S: "1,2,5,10,30" -> the delays (the last repeats)."""
    try:
        delays = tuple(float(x) for x in s.tensor_restart_backoff_s.split(",") if x.strip())
    except ValueError:
        delays = ()
    if not delays or min(delays) < 0:
        raise SystemExit("OCRQ_TENSOR_RESTART_BACKOFF_S must be seconds separated by commas, "
                         f"not {s.tensor_restart_backoff_s!r}")
    return delays


def feeder_wait_s(s: Settings) -> float:
    """How long a feeder's model call waits for the tensor server to come back."""
    soft = float(CeleryConfig(s).task_soft_time_limit)
    return round(max(0.1, min(s.tensor_wait_s, soft / WAIT_SHARE)), 3)


def run_inprocess(s: Settings, args: argparse.Namespace) -> None:
    if args.concurrency <= 0:
        args.concurrency = s.gpu_worker_threads
    if s.device == "cpu":
        s = s.with_(device="cuda")  # the GPU worker's default device
    if not cuda_available():
        log.warning("no CUDA device available: GPU worker serving on CPU")
        s = s.with_(device="cpu", fp16=False)
    if args.concurrency <= 1:  # one task at a time: no call could join, never wait
        s = s.with_(batch_wait_ms=0.0)
    elif s.batch_wait_ms < 0:  # not set: merge concurrent batches, waiting a few ms at most
        s = s.with_(batch_wait_ms=DEFAULT_BATCH_WAIT_MS)
    # Prefetch multiplier 1 (CeleryConfig): each thread holds at most one message.
    run_worker("gpu", s, args, pool=THREADS_POOL)


if __name__ == "__main__":
    main()
