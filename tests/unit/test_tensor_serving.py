"""runtime=remote against a real tensor server: same text, shared passes, server deaths.

The server runs ONNX Runtime on the CPU here: in this process on a thread
(text parity, merging), or as the real ``python -m workers.tensor_server``
process (kill -9 and restart), as the GPU worker runs it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ocrq.engine import Engine
from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.inputs import run_images
from ocrq.models.serving.client import RemoteRuntime, hello, stats
from ocrq.models.serving.protocol import TensorServerError
from ocrq.models.serving.server import TensorServer
from ocrq.settings import Settings
from tests import tensor_server
from tests.fixtures import render_page
from workers.gpu import ServerProcess

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


def _server(model_root: Path, sock: Path, **over: object) -> TensorServer:
    s = Settings(model_root=model_root, threads=1, **{"batch_wait_ms": 0.0, **over})
    return TensorServer(sock, s).start()


def _lines(n: int) -> np.ndarray:
    """``n`` rendered text lines at the recogniser's height, one width (one shape)."""
    import cv2

    out = np.full((n, 48, 320, 3), 255, np.uint8)
    for i in range(n):
        crop = render_page([f"Total {i + 1}.50 EUR"], size=24, margin=6)
        w = min(320, int(round(48 * crop.shape[1] / crop.shape[0])))
        out[i, :, :w] = cv2.resize(crop, (w, 48))
    return out


def test_engine_reads_the_same_text_with_runtime_remote(
        model_root: Path, tmp_path: Path, invoice_page: np.ndarray, engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "t.sock"
    srv = _server(model_root, sock)
    # load_runtime("remote") reads the socket from the settings' environment.
    monkeypatch.setenv("OCRQ_TENSOR_SOCKET", str(sock))
    try:
        remote = Engine.from_settings(Settings(model_root=model_root, runtime="remote",
                                               tensor_socket=str(sock), threads=1))
        got = remote.run(invoice_page, name="invoice.png")
        want = engine.run(invoice_page, name="invoice.png")
        assert got.text() == want.text()
        assert len(got.lines) >= 8
        states = {s.name: s for s in remote.registry.states()}
        assert states["str"].backend == "remote" and states["str"].device == "cpu"
        served = {m["name"] for m in stats(str(sock))["models"].values()}
        assert {"std", "str"} <= served  # the forward passes ran in the server
    finally:
        srv.close()


def test_calls_of_different_connections_share_forward_passes(
        model_root: Path, tmp_path: Path) -> None:
    sock = tmp_path / "t.sock"
    # A long wait so that the threads (each its own connection, as feeder processes
    # would be) reliably meet on a loaded 2-core machine; counters, not times, asserted.
    srv = _server(model_root, sock, batch_wait_ms=400.0)
    manifest = ModelRepository(model_root).manifest("str", 1)
    runtimes = [RemoteRuntime(sock, manifest.weights_path, timeout_s=60) for _ in range(4)]
    batches = [_lines(3)[i:i + 1].repeat(2, axis=0) for i in range(3)] + [_lines(2)]
    barrier = threading.Barrier(len(runtimes))
    outs: list[np.ndarray | None] = [None] * len(runtimes)

    def call(i: int) -> None:
        barrier.wait()
        outs[i] = runtimes[i].run_images(batches[i], manifest.input)

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(runtimes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        local = load_runtime("onnxruntime", manifest.weights_path, threads=1)
        for batch, out in zip(batches, outs, strict=True):
            assert out is not None
            np.testing.assert_allclose(out, run_images(local, batch, manifest.input),
                                       rtol=1e-4, atol=1e-4)
        counters = runtimes[0].stats()["stats"]
        assert counters["calls"] == len(runtimes)
        assert counters["passes"] < counters["calls"], counters
        assert counters["merged_calls"] >= 2, counters
        # A short-lived connection (a HELLO) is counted down when its server thread
        # sees it close, which lags on a loaded machine: wait for that, boundedly.
        # The count a poll saw is the one checked: a further STATS call could find the
        # poll's own connection not yet counted down (it failed so once in CI).
        deadline = time.monotonic() + 10
        while True:
            seen = stats(str(sock))["connections"]
            if seen <= len(runtimes) + 1 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert seen == len(runtimes) + 1  # + the STATS call itself
    finally:
        for r in runtimes:
            r.close()
        srv.close()


@pytest.fixture
def server_env(model_root: Path) -> Iterator[dict[str, str]]:
    yield tensor_server.server_env(model_root)


def test_kill_9_mid_run_reconnects_to_the_restarted_server_or_fails_clearly(
        model_root: Path, tmp_path: Path, server_env: dict[str, str]) -> None:
    sock = tmp_path / "t.sock"
    proc = tensor_server.spawn(sock, server_env)
    manifest = ModelRepository(model_root).manifest("str", 1)
    remote = RemoteRuntime(sock, manifest.weights_path, timeout_s=20)
    batch = _lines(4)
    want = remote.run_images(batch, manifest.input)
    results: list[str] = []
    stop = threading.Event()

    def hammer() -> None:  # calls in flight while the server dies
        while not stop.is_set():
            try:
                out = remote.run_images(batch, manifest.input)
                results.append("same" if np.array_equal(out, want) else "DIFFERENT")
            except TensorServerError as exc:
                results.append(f"error: {exc}")

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = tensor_server.spawn(sock, server_env)  # as the GPU worker's supervisor does
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(timeout=60)
    try:
        assert not t.is_alive(), "a call hung"
        assert "DIFFERENT" not in results
        errors = [r for r in results if r.startswith("error")]
        assert all("tensor server" in e for e in errors), errors
        assert np.array_equal(remote.run_images(batch, manifest.input), want)
        assert stats(str(sock))["pid"] == proc.pid  # served by the new process
    finally:
        proc.kill()
        proc.wait()

    with pytest.raises(TensorServerError):  # no server comes back: a clear error
        remote.run_images(batch, manifest.input)


def test_gpu_worker_restarts_its_tensor_server(tmp_path: Path, server_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in server_env.items():
        monkeypatch.setenv(k, v)  # the supervisor's child inherits this environment
    monkeypatch.chdir(ROOT)
    server = ServerProcess(str(tmp_path / "t.sock"), hello_timeout_s=60)
    first = server.start()["pid"]
    try:
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                now = hello(server.socket_path, timeout_s=2)["pid"]
                if now != first:
                    break
            except (OSError, TensorServerError):
                pass
            assert time.monotonic() < deadline, "tensor server not restarted"
            time.sleep(0.2)
        # The new server answers HELLO (to us too) before the supervisor counts it.
        while server.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.restarts == 1
    finally:
        server.stop()
    assert server.popen is not None and server.popen.poll() is not None  # stopped with us


def test_a_pages_batches_go_in_flight_together_and_read_the_same(
        model_root: Path, tmp_path: Path) -> None:
    sock = tmp_path / "t.sock"
    srv = _server(model_root, sock)
    manifest = ModelRepository(model_root).manifest("str", 1)
    remote = RemoteRuntime(sock, manifest.weights_path, timeout_s=60)
    lines = _lines(3)
    # Three widths, as the recognition stage makes for one page: three shapes.
    batches = [lines[:1, :, :128], lines[1:2, :, :192], lines[2:, :, :320]] * 4
    try:
        got = remote.run_many_images(batches, manifest.input)
        local = load_runtime("onnxruntime", manifest.weights_path, threads=1)
        for batch, out in zip(batches, got, strict=True):
            np.testing.assert_allclose(out, run_images(local, batch, manifest.input),
                                       rtol=1e-4, atol=1e-4)
        # Sent at once on as many connections as were in flight (at most 8).
        assert stats(str(sock))["connections"] == 8 + 1  # + this STATS call
    finally:
        remote.close()
        srv.close()
