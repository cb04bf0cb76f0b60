"""The tensor server: the one process that owns the GPU and runs forward passes.

Why a separate process (issue 11): a forward pass needs ~15 ms of GPU per
receipt, while decoding, resizing, post-processing, crops and CTC decoding
take the rest, and in one Python process (GIL) that host work caps the GPU
worker at a few pages a second. So the GPU worker's feeder processes (Celery
prefork children, as many as there are cores) do the host work, and send
tensors here over a Unix socket (``protocol.py``).

One thread per client connection. Each thread calls the model's runtime as
:func:`~ocrq.models.runtime_setup.build_runtime` made it, so the concurrent
calls of all connections meet in its :class:`BatchingRuntime` and share
forward passes: that is the cross-page and cross-job batching. A request
runs on the connection's own thread; a slow model never blocks another
connection's reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.errors import OcrqError
from ocrq.models.gpu import process_memory
from ocrq.models.runtimes.inputs import run_images
from ocrq.models.serving.models import ModelTable
from ocrq.models.serving.protocol import (
    FrameError,
    Op,
    Request,
    recv_request,
    send_reply,
)
from ocrq.settings import Settings

log = logging.getLogger("ocrq.tensor_server")
PROTOCOL_VERSION = 1


class _Handler(socketserver.BaseRequestHandler):
    server: _UnixServer

    def handle(self) -> None:
        self.server.owner.serve_connection(self.request)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a stuck client never blocks the server's exit
    # Every feeder process connects at once when a GPU worker starts (16 on a
    # 16-core host, several models each), while the server is busy warming a
    # model: socketserver's default backlog of 5 refused them with EAGAIN.
    request_queue_size = 256
    owner: TensorServer


class TensorServer:
    """Serves forward passes on ``socket_path`` with the runtimes ``settings`` make."""

    def __init__(self, socket_path: str | Path, settings: Settings) -> None:
        self.socket_path = str(socket_path)
        self.settings = settings
        self.models = ModelTable(settings)
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._connections = 0
        self._requests = 0
        self._refused_frames = 0
        self._bytes_in = 0  # array bytes received and sent: the socket's load
        self._bytes_out = 0
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------
    def bind(self) -> None:
        _clear_stale_socket(self.socket_path)
        old = os.umask(0o177)  # the socket is born 0600: only this user may connect
        try:
            self._server = _UnixServer(self.socket_path, _Handler)
        finally:
            os.umask(old)
        self._server.owner = self
        log.info("tensor server on %s (pid %d, %s on %s)", self.socket_path, self.pid,
                 self.settings.runtime, self.settings.device)

    def serve_forever(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> TensorServer:
        """Serve on a background thread (tests, and processes that do more)."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="tensor-server",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.models.close()

    # --- one connection --------------------------------------------------------
    def serve_connection(self, conn: socket.socket) -> None:
        held: dict[str, int] = {}  # model key -> LOADs on this connection
        with self._lock:
            self._connections += 1
        try:
            while True:
                try:
                    req = recv_request(conn, self.settings.tensor_max_bytes,
                                       self.settings.tensor_timeout_s)
                except FrameError as exc:  # hostile or broken client: drop it, not us
                    with self._lock:
                        self._refused_frames += 1
                    log.warning("tensor server: refused a frame, closing connection: %s", exc)
                    return
                except (OSError, TimeoutError):  # closed, reset, stalled mid-frame
                    return
                if req is None:
                    return
                with self._lock:
                    self._requests += 1
                    self._bytes_in += 0 if req.array is None else req.array.nbytes
                if not self._answer(conn, req, held):
                    return
        finally:
            for key in held:
                self.models.release(key)
            with self._lock:
                self._connections -= 1

    def _answer(self, conn: socket.socket, req: Request, held: dict[str, int]) -> bool:
        """Serve one request; False when the reply could not be sent (drop the client)."""
        try:
            out, data = self._dispatch(req, held)
        except OcrqError as exc:
            out, data, error = None, {"code": exc.code, "message": exc.message}, True
        except Exception as exc:  # a model's own failure: the caller's job fails, we live
            log.exception("tensor server: %s failed", req.op.name)
            out, data = None, {"code": "tensor_server_run", "message":
                               f"{type(exc).__name__}: {exc}"}
            error = True
        else:
            error = False
            with self._lock:
                self._bytes_out += 0 if out is None else out.nbytes
        # The reply's own deadline starts now: a LOAD that warmed buckets for minutes
        # still gets its answer sent.
        deadline = time.monotonic() + self.settings.tensor_timeout_s
        try:
            send_reply(conn, req.op, req.request_id, deadline, array=out, data=data,
                       error=error)
        except (OSError, TimeoutError, FrameError) as exc:
            log.warning("tensor server: %s reply not sent, closing connection: %s",
                        req.op.name, exc)
            return False
        return True

    def _dispatch(self, req: Request, held: dict[str, int]
                  ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        if req.op == Op.HELLO:
            return None, self.facts()
        if req.op == Op.STATS:
            return None, self.stats()
        if req.op == Op.LOAD:
            model = self.models.acquire(req.path)
            if model.path in held:  # one reference per connection
                self.models.release(model.path)
            held[model.path] = held.get(model.path, 0) + 1
            return None, {**model.facts(), "key": model.path,
                          "max_bytes": self.settings.tensor_max_bytes}
        key = self._held_key(req.path, held)
        if req.op == Op.RELEASE:
            held[key] -= 1
            if held[key] <= 0:
                del held[key]
                self.models.release(key)
            return None, {"released": key}
        return self._run(req, key), None

    def _held_key(self, path: str, held: dict[str, int]) -> str:
        key = path if path in held else str(Path(path).resolve())
        if key not in held:
            raise OcrqError(f"model {path!r} was not loaded on this connection (LOAD first)")
        return key

    def _run(self, req: Request, key: str) -> np.ndarray:
        array = req.array
        model = self.models.get(key)
        if req.op == Op.RUN_IMAGES:
            if array is None or array.dtype != np.uint8 or array.ndim != 4:
                raise OcrqError("RUN_IMAGES takes uint8 NHWC images")
            out = run_images(model.runtime, array, model.manifest.input)
        else:
            if array is None or array.dtype != np.float32:
                raise OcrqError("RUN takes a float32 batch")
            out = model.runtime.run(array)
        return np.ascontiguousarray(out, np.float32)

    # --- facts -------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        s = self.settings
        return {"pid": self.pid, "device": s.device, "backend": s.runtime, "fp16": s.fp16,
                "protocol": PROTOCOL_VERSION, "model_root": str(self.models.root),
                "max_bytes": s.tensor_max_bytes}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = {"connections": self._connections, "requests": self._requests,
                        "refused_frames": self._refused_frames,
                        "bytes_in": self._bytes_in, "bytes_out": self._bytes_out}
        return {**self.facts(), **counters, "models": self.models.stats(),
                "memory": process_memory().to_dict()}


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file a dead server left; refuse to steal a live one's."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:  # refused: nobody listens, the file is stale
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OcrqError(f"a tensor server already listens on {path}")
