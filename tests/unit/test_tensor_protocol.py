"""The tensor server's wire format and its refusals, against a real server on a real socket.

The server runs in this process on a thread (ONNX Runtime, CPU); clients talk
to it over a Unix socket exactly as the GPU worker's feeders do. Hostile
frames must close that one connection and leave the server serving.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ocrq.models.repository import ModelRepository
from ocrq.models.serving.client import RemoteRuntime, hello
from ocrq.models.serving.protocol import (
    MAGIC,
    MAX_NDIM,
    REQUEST,
    DType,
    FrameError,
    Op,
    Request,
    TensorServerError,
    recv_reply,
    recv_request,
    send_reply,
    send_request,
)
from ocrq.models.serving.server import TensorServer
from ocrq.settings import Settings

pytestmark = pytest.mark.timeout(120)
MAX_BYTES = 8 * 1024 * 1024


@pytest.fixture
def server(model_root: Path, tmp_path: Path) -> Iterator[TensorServer]:
    s = Settings(model_root=model_root, threads=1, batch_wait_ms=0.0, tensor_timeout_s=2.0,
                 tensor_max_bytes=MAX_BYTES)
    srv = TensorServer(tmp_path / "t.sock", s).start()
    yield srv
    srv.close()


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1),
    np.random.default_rng(0).standard_normal((3, 1, 5, 7)).astype(np.float32),
    np.zeros((0, 48, 64, 3), np.uint8),  # an empty batch keeps its shape
    np.ones((1,) * MAX_NDIM, np.float32),
    None,
])
def test_request_and_reply_round_trip_shapes_and_dtypes(array: np.ndarray | None) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 5
    with a, b:
        send_request(a, Request(Op.RUN, 7, "/models/str/1/model.onnx", array), deadline)
        got = recv_request(b, MAX_BYTES, 5.0)
        assert got is not None and got.op == Op.RUN and got.request_id == 7
        assert got.path == "/models/str/1/model.onnx"
        if array is None:
            assert got.array is None
        else:
            assert got.array is not None and got.array.dtype == array.dtype
            assert got.array.shape == array.shape and np.array_equal(got.array, array)
            send_reply(b, Op.RUN, 7, deadline, array=got.array)
            back = recv_reply(a, MAX_BYTES, deadline)
            assert back.array is not None and np.array_equal(back.array, array)
        send_reply(b, Op.STATS, 8, deadline, data={"x": [1, 2]}, error=True)
        err = recv_reply(a, MAX_BYTES, deadline)
        assert err.data == {"x": [1, 2]} and err.status == 1 and err.array is None


def test_unsupported_dtype_and_too_many_dims_are_refused_before_sending() -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(FrameError):
        send_request(a, Request(Op.RUN, 1, "", np.zeros(3, np.int64)), time.monotonic() + 1)
    with a, b, pytest.raises(FrameError):
        send_request(a, Request(Op.RUN, 1, "", np.zeros((1,) * 9, np.float32)),
                     time.monotonic() + 1)


def _raw(path: str, frame: bytes, wait_s: float = 5.0) -> bytes:
    """Send ``frame`` raw; what the server sends back before closing (b"": closed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(wait_s)
        s.connect(path)
        try:
            s.sendall(frame)
            return s.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):  # closed with our bytes unread
            return b""


def _head(op: int = Op.RUN, dtype: int = DType.FLOAT32, ndim: int = 1, path_len: int = 0,
          dims: tuple[int, ...] = (4,), magic: bytes = MAGIC) -> bytes:
    d = list(dims) + [0] * (MAX_NDIM - len(dims))
    return REQUEST.pack(magic, op, dtype, ndim, 0, path_len, 1, *d)


@pytest.mark.parametrize("frame", [
    _head(magic=b"HTTP") + b"x" * 16,  # not our protocol
    _head(op=99),  # unknown op
    _head(dtype=42),  # unknown dtype
    _head(ndim=MAX_NDIM + 1),  # too many dims
    _head(ndim=2, dims=(1 << 16, 1 << 16)),  # 16 GiB claimed: over the per-request bound
    _head(path_len=1 << 20),  # a path of 1 MiB
    _head(dtype=DType.NONE, ndim=1, dims=(3,)),  # dims without an array
    _head(path_len=2) + b"\xff\xfe",  # a path that is not UTF-8
], ids=["magic", "op", "dtype", "ndim", "oversized", "path", "dims", "utf8"])
def test_malformed_frames_close_the_connection_not_the_server(
        server: TensorServer, frame: bytes) -> None:
    assert _raw(server.socket_path, frame) == b""
    assert hello(server.socket_path)["pid"] == os.getpid()  # still serving
    assert server.stats()["refused_frames"] == 1


def test_a_client_stalling_mid_frame_is_cut_off_by_the_deadline(server: TensorServer) -> None:
    # Header says 4 floats, none follow: the server waits tensor_timeout_s (2 s), then closes.
    t0 = time.monotonic()
    assert _raw(server.socket_path, _head(), wait_s=30) == b""
    assert time.monotonic() - t0 < 25  # closed by the server's deadline, not our timeout
    assert "pid" in hello(server.socket_path)


def test_paths_outside_the_model_root_are_refused(server: TensorServer, model_root: Path,
                                                  tmp_path: Path) -> None:
    outside = tmp_path / "evil.onnx"
    outside.write_bytes(b"not a model")
    link = model_root / "str" / "1" / "link.onnx"
    link.symlink_to(outside)
    try:
        up = model_root / "str" / "1" / ".." / ".." / ".."  # the temp root, via the models
        for path in ["/etc/passwd", str(outside), str(link), str(up / tmp_path.name / outside.name),
                     str(model_root / "str" / "1" / "manifest.json"),  # inside, not weights
                     str(model_root / "nosuch" / "1" / "model.onnx"), "", "\x00"]:
            with pytest.raises(TensorServerError) as err:
                RemoteRuntime(server.socket_path, path, timeout_s=5)
            assert "refused LOAD" in str(err.value), path
    finally:
        link.unlink()
    assert hello(server.socket_path)["pid"] == os.getpid()


def test_run_before_load_is_an_error_reply_and_the_connection_stays_usable(
        server: TensorServer, model_root: Path) -> None:
    weights = ModelRepository(model_root).manifest("str", 1).weights_path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(server.socket_path)
        deadline = time.monotonic() + 10
        send_request(s, Request(Op.RUN, 1, str(weights), np.zeros((1, 3, 48, 64), np.float32)),
                     deadline)
        reply = recv_reply(s, MAX_BYTES, deadline)
        assert reply.status == 1 and "LOAD first" in (reply.data or {})["message"]
        send_request(s, Request(Op.HELLO, 2, "", None), deadline)
        assert recv_reply(s, MAX_BYTES, deadline).data["pid"] == os.getpid()  # type: ignore[index]


def test_no_server_is_a_clear_error(tmp_path: Path, model_root: Path) -> None:
    weights = ModelRepository(model_root).manifest("str", 1).weights_path
    with pytest.raises(TensorServerError, match="no tensor server"):
        RemoteRuntime(tmp_path / "none.sock", weights, timeout_s=1)
    with pytest.raises(TensorServerError, match="OCRQ_TENSOR_SOCKET"):
        RemoteRuntime("", weights, timeout_s=1)


def test_reply_header_layout_is_stable() -> None:
    """Feeders and server may be deployed apart: the header is part of the protocol."""
    assert REQUEST.size == struct.calcsize("<4sBBBBIQ8I") == 52


def test_a_load_slower_than_the_request_deadline_is_still_answered(
        model_root: Path, tmp_path: Path) -> None:
    """A LOAD on a GPU warms every bucket (minutes); the reply's deadline starts after."""
    # 20 ms: loading the recogniser takes 45 ms and more even on an idle machine.
    s = Settings(model_root=model_root, threads=1, batch_wait_ms=0.0, tensor_timeout_s=0.02)
    srv = TensorServer(tmp_path / "t.sock", s).start()
    try:
        weights = ModelRepository(model_root).manifest("str", 1).weights_path
        remote = RemoteRuntime(srv.socket_path, weights, timeout_s=60)
        assert remote.facts["load_s"] > s.tensor_timeout_s  # the case this test is about
        remote.close()
    finally:
        srv.close()
