"""``runtime=remote``: a model whose forward passes run in the tensor server.

A feeder process (a prefork child of the GPU worker) does the host work of a
page and calls this runtime like any other; the pixels go to the server over
its Unix socket and the output comes back (``protocol.py``).

- Connections are per process: a socket inherited through fork is never used
  (the pid is checked on every call); the child opens its own.
- Thread-safe without serialising: each call takes an idle connection of
  this runtime or opens one (which LOADs the model on it), so concurrent
  calls of one process reach the server side by side and can share a pass.
- A broken connection (the server restarted) is reopened once, waiting for
  the new server up to the call's deadline, and the call retried; then the
  call fails with :class:`TensorServerError`. Every wait has a deadline: a
  job fails with a reason, it never hangs.
- When the server's runtime runs at shape buckets, the LOAD answer carries
  the policy and the padding is done here (host work, spread over the
  feeders); the output is cropped back here too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.models.runtimes.buckets import Buckets
from ocrq.models.serving.protocol import (
    FrameError,
    Op,
    Reply,
    Request,
    Status,
    TensorServerError,
    recv_reply,
    send_request,
)

LOAD_TIMEOUT_S = 600.0  # a first LOAD on a GPU builds and warms every bucket shape
RECONNECT_POLL_S = 0.1
CONNECT_WAIT_S = 30.0  # the first connection of a runtime: a server busy loading or warming
MAX_IN_FLIGHT = 8  # one page's batches sent at once (connections per feeder, per model)
_ids = itertools.count(1)


class _Broken(Exception):
    """A pipelined call met a broken connection: redo it call by call (with retries)."""


class Connection:
    """One socket to the tensor server; one request at a time."""

    def __init__(self, socket_path: str, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.pid = os.getpid()
        self.max_bytes = 1 << 40  # until the server says (HELLO/LOAD)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout_s)
            self.sock.connect(socket_path)
        except BaseException:
            self.sock.close()
            raise

    def call(self, op: Op, path: str = "", array: np.ndarray | None = None,
             timeout_s: float | None = None) -> Reply:
        """One request and its reply; raises OSError/TimeoutError/FrameError on the wire."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        return self.receive(op, self.send(op, path, array, deadline), deadline)

    def send(self, op: Op, path: str, array: np.ndarray | None, deadline: float) -> int:
        rid = next(_ids)
        send_request(self.sock, Request(op, rid, path, array), deadline)
        return rid

    def receive(self, op: Op, rid: int, deadline: float) -> Reply:
        reply = recv_reply(self.sock, self.max_bytes, deadline)
        if reply.request_id != rid or reply.op != op:
            raise FrameError(f"reply {reply.op.name} #{reply.request_id} to {op.name} #{rid}")
        return reply

    def close(self) -> None:
        self.sock.close()


def _checked(reply: Reply, what: str) -> Reply:
    if reply.status == Status.ERROR:
        data = reply.data or {}
        raise TensorServerError(f"tensor server refused {what}: {data.get('message', data)}",
                                server_code=data.get("code", ""))
    return reply


def hello(socket_path: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The server's facts (device, backend, fp16, pid); raises OSError when none answers."""
    conn = Connection(socket_path, timeout_s)
    try:
        return dict(_checked(conn.call(Op.HELLO), "HELLO").data or {})
    finally:
        conn.close()


def stats(socket_path: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The server's counters: connections, requests, and per model its runtime's stats."""
    conn = Connection(socket_path, timeout_s)
    try:
        return dict(_checked(conn.call(Op.STATS), "STATS").data or {})
    finally:
        conn.close()


class RemoteRuntime:
    """A :class:`~ocrq.models.runtimes.base.Runtime` served by the tensor server."""

    backend = "remote"

    def __init__(self, socket_path: str | Path, weights_path: str | Path, *,
                 timeout_s: float = 60.0, load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        if not str(socket_path):
            raise TensorServerError("runtime=remote needs the tensor server's socket "
                                    "(OCRQ_TENSOR_SOCKET); the GPU worker sets it")
        self.socket_path = str(socket_path)
        self.weights_path = str(weights_path)
        self.timeout_s = timeout_s
        self.load_timeout_s = max(load_timeout_s, timeout_s)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: list[Connection] = []
        self._closed = False
        self.facts: dict[str, Any] = {}
        self.buckets: Buckets | None = None
        # LOAD now (a bad path fails the model load); a full listen queue or a
        # server still starting is waited for, up to the connect deadline.
        self._give(self._open(wait_s=CONNECT_WAIT_S))

    @property
    def device(self) -> str:
        return str(self.facts.get("device", "unknown"))

    # --- connections ----------------------------------------------------------
    def _open(self, wait_s: float) -> Connection:
        """A new connection with the model LOADed on it. A server that is not
        listening yet, or drops the connection (one dying or restarting), is
        tried again until ``wait_s`` has passed; then :class:`TensorServerError`."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                conn = Connection(self.socket_path, self.timeout_s)
            except OSError as exc:
                self._wait_or_raise(deadline, exc)
                continue
            try:
                reply = conn.call(Op.LOAD, self.weights_path, timeout_s=self.load_timeout_s)
            except TimeoutError as exc:
                conn.close()
                raise TensorServerError(f"tensor server did not LOAD {self.weights_path} "
                                        f"within {self.load_timeout_s:.0f} s") from exc
            except (OSError, FrameError) as exc:
                conn.close()
                self._wait_or_raise(deadline, exc)
                continue
            if reply.status == Status.ERROR:
                conn.close()
            facts = dict(_checked(reply, "LOAD").data or {})
            conn.max_bytes = int(facts.get("max_bytes", conn.max_bytes))
            self.facts = facts
            self.buckets = Buckets.from_dict(facts["buckets"]) if facts.get("buckets") else None
            return conn

    def _wait_or_raise(self, deadline: float, exc: Exception) -> None:
        if time.monotonic() >= deadline:
            raise TensorServerError(f"no tensor server at {self.socket_path}: {exc}",
                                    socket=self.socket_path) from exc
        time.sleep(RECONNECT_POLL_S)

    def _take(self) -> Connection | None:
        with self._lock:
            if self._closed:
                raise TensorServerError("remote runtime is closed")
            if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
                for conn in self._idle:
                    conn.close()  # our fd copy only: the parent's socket stays open
                self._idle, self._pid = [], os.getpid()
            return self._idle.pop() if self._idle else None

    def _give(self, conn: Connection) -> None:
        with self._lock:
            if self._closed or conn.pid != os.getpid():
                conn.close()
                return
            self._idle.append(conn)

    def _request(self, op: Op, array: np.ndarray) -> np.ndarray:
        """One request on an idle connection; one reconnect + retry when it broke."""
        conn = self._take()
        for attempt in (1, 2):
            if conn is None:
                conn = self._open(wait_s=self.timeout_s)
            try:
                reply = conn.call(op, self.weights_path, array)
            except TimeoutError as exc:  # the server is alive but stuck: do not pile on
                conn.close()
                raise TensorServerError(
                    f"tensor server gave no answer within {self.timeout_s:.0f} s "
                    f"({op.name} {Path(self.weights_path).parent.parent.name})") from exc
            except (OSError, FrameError) as exc:  # broken: the server died or restarted
                conn.close()
                conn = None
                if attempt == 2:
                    raise TensorServerError(
                        f"tensor server connection broken twice ({op.name}): {exc}",
                        socket=self.socket_path) from exc
                continue
            self._give(conn)
            out = _checked(reply, op.name).array
            if out is None:
                raise TensorServerError(f"tensor server answered {op.name} without an array")
            return out
        raise AssertionError("unreachable")

    # --- the Runtime interface ------------------------------------------------------
    def _pad(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(pixels as sent, (h, w) before padding, (h, w) sent)."""
        images = np.ascontiguousarray(images, np.uint8)
        hw = (int(images.shape[1]), int(images.shape[2])) if images.ndim == 4 else (0, 0)
        if self.buckets is None or images.ndim != 4 or images.shape[0] == 0:
            return images, hw, hw
        padded, hw = self.buckets.pad(images)
        return np.ascontiguousarray(padded), hw, (int(padded.shape[1]), int(padded.shape[2]))

    def _crop(self, out: np.ndarray, hw: tuple[int, int], sent: tuple[int, int]) -> np.ndarray:
        return out if self.buckets is None else self.buckets.crop(out, hw, sent)

    def run_images(self, images: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
        """uint8 NHWC pixels; the server normalises them (spec: its manifest's)."""
        sent, hw, shw = self._pad(images)
        return self._crop(self._request(Op.RUN_IMAGES, sent), hw, shw)

    def run_many_images(self, batches: Sequence[np.ndarray], spec: Mapping[str, Any]
                        ) -> list[np.ndarray]:
        """Every batch in flight at once, each on its own connection: the server runs
        them side by side (each may join other feeders' calls of its shape), so a
        page's width buckets cost about one round trip, not one each."""
        if len(batches) < 2:
            return [self.run_images(b, spec) for b in batches]
        prepared = [self._pad(b) for b in batches]
        outs: list[np.ndarray] = []
        for i in range(0, len(prepared), MAX_IN_FLIGHT):
            arrays = [p[0] for p in prepared[i : i + MAX_IN_FLIGHT]]
            try:
                outs += self._pipelined(arrays)
            except _Broken:  # one by one, each with its reconnect and retry
                outs += [self._request(Op.RUN_IMAGES, a) for a in arrays]
        return [self._crop(o, hw, shw) for o, (_, hw, shw) in zip(outs, prepared, strict=True)]

    def _pipelined(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        op, conns, rids = Op.RUN_IMAGES, [], []
        deadline = time.monotonic() + self.timeout_s
        try:
            for array in arrays:
                conns.append(self._take() or self._open(wait_s=0.0))
                rids.append(conns[-1].send(op, self.weights_path, array, deadline))
            replies = [c.receive(op, rid, deadline) for c, rid in zip(conns, rids, strict=True)]
        except TimeoutError as exc:
            for c in conns:
                c.close()
            raise TensorServerError(f"tensor server gave no answer within "
                                    f"{self.timeout_s:.0f} s ({len(arrays)} batches)") from exc
        except (OSError, FrameError, TensorServerError) as exc:
            for c in conns:
                c.close()
            raise _Broken from exc
        for c in conns:
            self._give(c)
        outs = [_checked(r, op.name).array for r in replies]
        if any(o is None for o in outs):
            raise TensorServerError(f"tensor server answered {op.name} without an array")
        return [o for o in outs if o is not None]

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        if self.buckets is None or batch.ndim != 4 or batch.shape[0] == 0:
            return self._request(Op.RUN, batch)
        padded, hw = self.buckets.pad_nchw(batch)
        out = self._request(Op.RUN, np.ascontiguousarray(padded))
        return self.buckets.crop(out, hw, (int(padded.shape[2]), int(padded.shape[3])))

    def stats(self) -> dict[str, Any]:
        """This model's entry in the server's STATS (batching counters, device)."""
        models = stats(self.socket_path, self.timeout_s).get("models", {})
        return dict(models.get(self.facts.get("key", ""), {}))

    def close(self) -> None:
        """RELEASE on every connection of this process (the server may unload it)."""
        with self._lock:
            conns, self._idle, self._closed = self._idle, [], True
            ours = self._pid == os.getpid()
        for conn in conns:
            if not ours:  # inherited through fork: the parent's reference, not ours
                conn.close()
                continue
            # A server that is gone holds nothing for us any more: nothing to release.
            with contextlib.suppress(OSError, TimeoutError, FrameError):
                conn.call(Op.RELEASE, self.weights_path, timeout_s=min(5.0, self.timeout_s))
            conn.close()
