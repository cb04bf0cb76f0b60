"""``runtime=remote``: a model whose forward passes run in the tensor server.

A feeder process (a prefork child of the GPU worker) does the host work of a
page and calls this runtime like any other; the pixels go to the server over
its Unix socket and the output comes back (``protocol.py``).

- Connections are per process: a socket inherited through fork is never used
  (the pid is checked on every call); the child opens its own.
- Thread-safe without serialising: each call takes an idle connection of
  this runtime or opens one (which LOADs the model on it), so concurrent
  calls of one process reach the server side by side and can share a pass.
- A broken connection (the server restarted) is reopened, waiting for the
  new server up to ``wait_s`` (``OCRQ_TENSOR_WAIT_S``, well under a step's soft
  time limit), and the call retried. A server that does not come back within
  the wait, or that dies twice under one call, raises
  :class:`TensorServerDown`: the step gives its message back and is tried
  again later (ocrq/pipeline/retry.py); ``during_call`` says whether the server
  died holding this call's request (a poison page may be what kills it).
  Every wait has a deadline: a job fails with a reason, it never hangs.
- When the server's runtime runs at shape buckets, the LOAD answer carries
  the policy and the padding is done here (host work, spread over the
  feeders); the output is cropped back here too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrq.models.runtimes.buckets import Buckets
from ocrq.models.serving.protocol import (
    Connection,
    FrameError,
    Op,
    Reply,
    Status,
    TensorServerDown,
    TensorServerError,
)
from ocrq.settings import Settings

LOAD_TIMEOUT_S = 600.0  # a first LOAD on a GPU builds and warms every bucket shape
RECONNECT_POLL_S = 0.1
CONNECT_WAIT_S = 30.0  # the first connection of a runtime: a server busy loading or warming
MAX_IN_FLIGHT = 8  # one page's batches sent at once (connections per feeder, per model)
MIN_RELOAD_S = 1.0  # a LOAD on a reopened connection gets the wait's rest, at least this
CALL_TRIES = 3  # a stale idle connection, then fresh ones; two deaths under a call end it


class _Broken(Exception):
    """A pipelined call met a broken connection: redo it call by call (with retries)."""

    def __init__(self, in_call: bool) -> None:
        super().__init__("broken")
        self.in_call = in_call  # the server died holding a request (sent, not answered)


class _Lost(Exception):
    """One call's connection broke: before its request was taken (a stale idle
    connection, a dead server) or after (the server died holding it)."""

    def __init__(self, exc: BaseException, in_call: bool) -> None:
        super().__init__(str(exc))
        self.in_call = in_call


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
                 timeout_s: float = 60.0, load_timeout_s: float = LOAD_TIMEOUT_S,
                 wait_s: float | None = None) -> None:
        if not str(socket_path):
            raise TensorServerError("runtime=remote needs the tensor server's socket "
                                    "(OCRQ_TENSOR_SOCKET); the GPU worker sets it")
        self.socket_path = str(socket_path)
        self.weights_path = str(weights_path)
        self.timeout_s = timeout_s
        self.load_timeout_s = max(load_timeout_s, timeout_s)
        # How long a call waits for a server that went away (None: OCRQ_TENSOR_WAIT_S).
        self.wait_s = Settings.from_env().tensor_wait_s if wait_s is None else wait_s
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: list[Connection] = []
        self._closed = False
        self.facts: dict[str, Any] = {}
        self.buckets: Buckets | None = None
        # LOAD now (a bad path fails the model load); a full listen queue or a busy
        # server is waited for, up to the connect deadline. One not there at all
        # (refused, no socket file: killed, in its restart backoff) only ``wait_s``: a
        # model loaded inside a step (a feeder started while the server was down) gives
        # the step back instead of spending its time limit.
        self._give(self._open(wait_s=CONNECT_WAIT_S, gone_s=self.wait_s))

    @property
    def device(self) -> str:
        return str(self.facts.get("device", "unknown"))

    # --- connections ----------------------------------------------------------
    def _open(self, wait_s: float, bounded: bool = False, during_call: bool = False,
              gone_s: float | None = None) -> Connection:
        """A new connection with the model LOADed on it. A server that is not
        listening yet, or drops the connection (one dying or restarting), is
        tried again until ``wait_s`` has passed; then :class:`TensorServerDown`.
        ``bounded``: the LOAD too gets only the wait's rest (a call inside a step:
        a restarted server still loading is given back to, not waited for).
        ``gone_s``: the wait while nothing listens at all (refused, no socket file)."""
        t0 = time.monotonic()
        deadline = t0 + wait_s
        while True:
            try:
                conn = Connection(self.socket_path, self.timeout_s)
            except OSError as exc:
                gone = isinstance(exc, ConnectionRefusedError | FileNotFoundError)
                if gone and gone_s is not None:
                    self._wait_or_raise(min(deadline, t0 + gone_s), gone_s, exc, during_call)
                else:
                    self._wait_or_raise(deadline, wait_s, exc, during_call)
                continue
            load_s = max(MIN_RELOAD_S, deadline - time.monotonic()) if bounded \
                else self.load_timeout_s
            try:
                reply = conn.call(Op.LOAD, self.weights_path, timeout_s=load_s)
            except TimeoutError as exc:
                conn.close()
                what = f"tensor server did not LOAD {self.weights_path} within {load_s:.0f} s"
                if bounded:  # a server just restarted, loading: worth a try later
                    raise TensorServerDown(what, socket=self.socket_path,
                                           during_call=during_call) from exc
                raise TensorServerError(what) from exc
            except (OSError, FrameError) as exc:
                conn.close()
                self._wait_or_raise(deadline, wait_s, exc, during_call)
                continue
            if reply.status == Status.ERROR:
                conn.close()
            facts = dict(_checked(reply, "LOAD").data or {})
            conn.max_bytes = int(facts.get("max_bytes", conn.max_bytes))
            self.facts = facts
            self.buckets = Buckets.from_dict(facts["buckets"]) if facts.get("buckets") else None
            return conn

    def _wait_or_raise(self, deadline: float, wait_s: float, exc: Exception,
                       during_call: bool) -> None:
        if time.monotonic() >= deadline:
            raise TensorServerDown(f"no tensor server at {self.socket_path} "
                                   f"(waited {wait_s:g} s): {exc}",
                                   socket=self.socket_path, during_call=during_call) from exc
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

    def _request(self, op: Op, array: np.ndarray, died: int = 0) -> np.ndarray:
        """One request on an idle connection; reopened and sent again when it broke,
        up to :data:`CALL_TRIES` times or until the server died under it twice.
        ``died``: deaths under this request already seen (a pipelined call's)."""
        conn = self._take()
        for _ in range(CALL_TRIES):
            if conn is None:
                conn = self._open(self.wait_s, bounded=True, during_call=died > 0)
            try:
                reply = self._call(conn, op, array)
            except _Lost as lost:  # broken: the server died or restarted
                conn.close()
                conn = None
                died += lost.in_call
                if died >= 2:
                    raise TensorServerDown(
                        f"tensor server died twice under one {op.name}: {lost}",
                        socket=self.socket_path, during_call=True) from lost
                continue
            self._give(conn)
            out = _checked(reply, op.name).array
            if out is None:
                raise TensorServerError(f"tensor server answered {op.name} without an array")
            return out
        raise TensorServerDown(f"tensor server connection broken {CALL_TRIES} times "
                               f"({op.name})", socket=self.socket_path, during_call=died > 0)

    def _call(self, conn: Connection, op: Op, array: np.ndarray) -> Reply:
        """The request and its reply; :class:`_Lost` when the connection broke."""
        deadline = time.monotonic() + self.timeout_s
        try:
            rid = conn.send(op, self.weights_path, array, deadline)
        except TimeoutError as exc:  # not reading: alive but stuck, do not pile on
            conn.close()
            raise self._stuck(op) from exc
        except (OSError, FrameError) as exc:  # a stale connection: never reached a server
            raise _Lost(exc, in_call=False) from exc
        try:
            return conn.receive(op, rid, deadline)
        except TimeoutError as exc:
            conn.close()
            raise self._stuck(op) from exc
        except (OSError, FrameError) as exc:  # sent, then broken: it died holding it
            raise _Lost(exc, in_call=True) from exc

    def _stuck(self, op: Op) -> TensorServerError:
        return TensorServerError(
            f"tensor server gave no answer within {self.timeout_s:.0f} s "
            f"({op.name} {Path(self.weights_path).parent.parent.name})")

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
            except _Broken as broken:  # one by one, each with its reconnect and retry
                outs += [self._request(Op.RUN_IMAGES, a, int(broken.in_call)) for a in arrays]
        return [self._crop(o, hw, shw) for o, (_, hw, shw) in zip(outs, prepared, strict=True)]

    def _pipelined(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        op, conns, rids = Op.RUN_IMAGES, [], []
        deadline = time.monotonic() + self.timeout_s
        try:
            for array in arrays:
                conns.append(self._take() or self._open(wait_s=0.0, bounded=True))
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
            # Every request sent, then a reply lost: the server died holding them.
            raise _Broken(in_call=len(rids) == len(arrays)) from exc
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
