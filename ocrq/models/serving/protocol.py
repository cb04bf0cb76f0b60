"""The tensor server's wire format: fixed binary headers + raw array bytes on a Unix socket.

Why not pickle or JSON for arrays: the feeders ship hundreds of MB/s of
pixels; a fixed header and the array's own bytes let both sides read straight
into a preallocated numpy buffer (``recv_into``) and send from a memoryview,
with no copy and nothing executable in the stream (the server is a trust
boundary: any local process that can open the socket may talk to it).

Request:  REQUEST header, then ``path_len`` bytes of a UTF-8 model path, then
          the array (``dtype`` + ``dims``; dtype NONE: no array).
Reply:    REPLY header, then ``length`` bytes: the array (dtype + dims) or,
          with dtype JSON, a JSON object (status ERROR: {"code", "message"}).

Every read and write has a deadline. A frame that breaks the bounds (magic,
op, dtype, ndim, sizes) raises :class:`FrameError`; the server then closes
that connection only.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ocrq.errors import BackendUnavailable, OcrqError

MAGIC = b"OQT1"
MAX_NDIM = 8
MAX_PATH_BYTES = 4096
MAX_JSON_BYTES = 1 << 20  # replies with facts or errors are small
_ids = itertools.count(1)  # request ids of this process
# magic, op, dtype, ndim, reserved, path length, request id, dims
REQUEST = struct.Struct("<4sBBBBIQ8I")
# magic, op, status, dtype, ndim, reserved x3, request id, payload length, dims
REPLY = struct.Struct("<4sBBBB3xQQ8I")


class Op(IntEnum):
    HELLO = 1
    LOAD = 2
    RUN_IMAGES = 3
    RUN = 4
    RELEASE = 5
    STATS = 6


class DType(IntEnum):
    NONE = 0  # request: no array
    JSON = 1  # reply: a JSON object
    UINT8 = 2
    FLOAT32 = 3


class Status(IntEnum):
    OK = 0
    ERROR = 1


NUMPY = {DType.UINT8: np.dtype(np.uint8), DType.FLOAT32: np.dtype(np.float32)}
CODES = {v: k for k, v in NUMPY.items()}


class FrameError(ValueError):
    """A malformed or out-of-bounds frame: the connection cannot be trusted further."""


class TensorServerError(OcrqError):
    """The tensor server could not be reached, did not answer in time, or refused."""

    code = "tensor_server"


class TensorServerDown(TensorServerError, BackendUnavailable):
    """No tensor server answered within the wait (killed, restarting, in its restart
    backoff, or still loading after a restart): the step is worth trying later."""

    code = "tensor_server_down"


@dataclass(frozen=True)
class Request:
    op: Op
    request_id: int
    path: str
    array: np.ndarray | None


@dataclass(frozen=True)
class Reply:
    op: Op
    request_id: int
    status: Status
    array: np.ndarray | None
    data: dict[str, Any] | None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def recv_exact(sock: socket.socket, view: memoryview, deadline: float) -> None:
    """Fill ``view`` from ``sock`` by ``deadline`` (monotonic); EOF -> ConnectionError."""
    got, size = 0, len(view)
    while got < size:
        sock.settimeout(_left(deadline))
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("connection closed by peer")
        got += n


def send_all(sock: socket.socket, parts: list[memoryview | bytes], deadline: float) -> None:
    """Send every part by ``deadline``; sendmsg gathers them without joining copies."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        sock.settimeout(_left(deadline))
        sent = sock.sendmsg(views)
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def _dims(array: np.ndarray | None) -> tuple[DType, int, list[int]]:
    if array is None:
        return DType.NONE, 0, [0] * MAX_NDIM
    if array.dtype not in CODES:
        raise FrameError(f"dtype {array.dtype} not supported (uint8, float32)")
    if array.ndim > MAX_NDIM:
        raise FrameError(f"{array.ndim} dimensions; at most {MAX_NDIM}")
    dims = [int(d) for d in array.shape] + [0] * (MAX_NDIM - array.ndim)
    return CODES[array.dtype], array.ndim, dims


def _body(array: np.ndarray | None) -> memoryview | bytes:
    if array is None or array.size == 0:
        return b""
    return memoryview(np.ascontiguousarray(array)).cast("B")


def send_request(sock: socket.socket, req: Request, deadline: float) -> None:
    path = req.path.encode("utf-8")
    if len(path) > MAX_PATH_BYTES:
        raise FrameError(f"model path of {len(path)} bytes; at most {MAX_PATH_BYTES}")
    dtype, ndim, dims = _dims(req.array)
    head = REQUEST.pack(MAGIC, int(req.op), int(dtype), ndim, 0, len(path), req.request_id,
                        *dims)
    send_all(sock, [head, path, _body(req.array)], deadline)


def _read_array(sock: socket.socket, dtype: DType, ndim: int, dims: tuple[int, ...],
                max_bytes: int, deadline: float) -> np.ndarray:
    if dtype not in NUMPY:
        raise FrameError(f"dtype code {int(dtype)} is not an array")
    if not 0 < ndim <= MAX_NDIM or any(dims[ndim:]):
        raise FrameError(f"ndim {ndim} out of bounds (1..{MAX_NDIM})")
    shape = tuple(dims[:ndim])
    nbytes = int(np.prod(shape, dtype=np.uint64)) * NUMPY[dtype].itemsize
    if nbytes > max_bytes:
        raise FrameError(f"array of {nbytes} bytes; at most {max_bytes}")
    array = np.empty(shape, NUMPY[dtype])
    if nbytes:
        recv_exact(sock, memoryview(array).cast("B"), deadline)
    return array


def _code(enum: type[IntEnum], value: int, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise FrameError(f"unknown {what} {value}") from None


def recv_request(sock: socket.socket, max_bytes: int, body_s: float,
                 idle_deadline: float | None = None) -> Request | None:
    """The next request; None on a clean EOF before its first byte.

    ``idle_deadline`` (monotonic; None: no limit): by when a request must
    start on an idle connection. Once its first byte is in, the rest is due
    within ``body_s`` seconds: a client that stalls mid-frame is cut off.
    """
    head = bytearray(REQUEST.size)
    view = memoryview(head)
    sock.settimeout(None if idle_deadline is None else _left(idle_deadline))
    first = sock.recv_into(view)
    if first == 0:
        return None
    due = time.monotonic() + body_s
    recv_exact(sock, view[first:], due)
    magic, op, dtype, ndim, _, path_len, rid, *dims = REQUEST.unpack(head)
    if magic != MAGIC:
        raise FrameError("bad magic: not an ocrq tensor client")
    op = _code(Op, op, "op")
    dtype = _code(DType, dtype, "dtype")
    if path_len > MAX_PATH_BYTES:
        raise FrameError(f"model path of {path_len} bytes; at most {MAX_PATH_BYTES}")
    raw = bytearray(path_len)
    recv_exact(sock, memoryview(raw), due)
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("model path is not UTF-8") from None
    array = None
    if dtype != DType.NONE:
        array = _read_array(sock, dtype, ndim, tuple(dims), max_bytes, due)
    elif ndim or any(dims):
        raise FrameError("dims given without an array")
    return Request(op, rid, path, array)


def send_reply(sock: socket.socket, op: Op, request_id: int, deadline: float, *,
               array: np.ndarray | None = None, data: dict[str, Any] | None = None,
               error: bool = False) -> None:
    if array is not None:
        dtype, ndim, dims = _dims(array)
        body: memoryview | bytes = _body(array)
    else:
        dtype, ndim, dims = DType.JSON, 0, [0] * MAX_NDIM
        body = json.dumps(data or {}, default=str).encode("utf-8")
    status = Status.ERROR if error else Status.OK
    head = REPLY.pack(MAGIC, int(op), int(status), int(dtype), ndim, request_id, len(body),
                      *dims)
    send_all(sock, [head, body], deadline)


def recv_reply(sock: socket.socket, max_bytes: int, deadline: float) -> Reply:
    head = bytearray(REPLY.size)
    recv_exact(sock, memoryview(head), deadline)
    magic, op, status, dtype, ndim, rid, length, *dims = REPLY.unpack(head)
    if magic != MAGIC:
        raise FrameError("bad magic in reply: not an ocrq tensor server")
    op, status = _code(Op, op, "op"), _code(Status, status, "status")
    dtype = _code(DType, dtype, "dtype")
    if dtype == DType.JSON:
        if length > MAX_JSON_BYTES:
            raise FrameError(f"JSON reply of {length} bytes; at most {MAX_JSON_BYTES}")
        raw = bytearray(length)
        recv_exact(sock, memoryview(raw), deadline)
        try:
            data = json.loads(raw.decode("utf-8")) if length else {}
        except ValueError:
            raise FrameError("reply is not JSON") from None
        return Reply(op, rid, status, None, data)
    array = _read_array(sock, dtype, ndim, tuple(dims), max_bytes, deadline)
    if array.nbytes != length:
        raise FrameError(f"reply length {length} does not match its dims")
    return Reply(op, rid, status, array, None)


class Connection:
    """A client's socket to the tensor server (client.py); one request at a time."""

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
