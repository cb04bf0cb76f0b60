"""runtime=remote while the tensor server is gone (issue 14): a call waits for it only
``wait_s`` (not its request timeout, not a step's time limit), then raises
TensorServerDown, a BackendUnavailable the pipeline gives the step back for. A
server that died holding the call's request is told apart (``during_call``): a
poison page that kills the server must still count as a lost delivery.

Real processes and sockets: the tensor server process (SIGKILLed, started again),
and a peer speaking the wire protocol that dies (closes) on every request it gets
after LOAD.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ocrq.errors import BackendUnavailable
from ocrq.models.repository import ModelRepository
from ocrq.models.serving.client import RemoteRuntime
from ocrq.models.serving.protocol import (
    Op,
    TensorServerDown,
    recv_request,
    send_reply,
)
from tests import tensor_server

pytestmark = pytest.mark.timeout(120)


def _spawn(sock: Path, model_root: Path) -> subprocess.Popen[bytes]:
    """The real server process (``python -m workers.tensor_server``), answering HELLO."""
    return tensor_server.spawn(sock, tensor_server.server_env(model_root))


def _batch() -> np.ndarray:
    return np.full((2, 48, 160, 3), 255, np.uint8)


def test_a_call_waits_for_a_gone_server_its_wait_not_its_timeout(
        model_root: Path, tmp_path: Path) -> None:
    sock = tmp_path / "t.sock"
    procs = [_spawn(sock, model_root)]
    try:
        manifest = ModelRepository(model_root).manifest("str", 1)
        remote = RemoteRuntime(sock, manifest.weights_path, timeout_s=60, wait_s=0.5)
        want = remote.run_images(_batch(), manifest.input)
        procs[0].kill()  # SIGKILL between two calls: the idle connection is dead
        procs[0].wait()
        t0 = time.monotonic()
        with pytest.raises(TensorServerDown) as err:
            remote.run_images(_batch(), manifest.input)
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 10, waited  # the wait, not the 60 s request timeout
        assert isinstance(err.value, BackendUnavailable)
        # It never reached a server: not a death under the call (not a lost delivery).
        assert err.value.code == "tensor_server_down" and not err.value.during_call
        # Back within the wait: the same call goes through on the new server.
        starter = threading.Thread(target=lambda: procs.append(_spawn(sock, model_root)))
        starter.start()
        remote.wait_s = 60.0
        assert np.array_equal(remote.run_images(_batch(), manifest.input), want)
        starter.join()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _dying_peer(sock_path: Path, stop: threading.Event) -> None:
    """Answers LOAD, then closes the connection on any other request: a server that
    dies (killed, out of memory) holding it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(8)
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            while True:
                req = recv_request(conn, 1 << 30, 10.0)
                if req is None or req.op != Op.LOAD:
                    break  # closed without an answer
                send_reply(conn, req.op, req.request_id, time.monotonic() + 10,
                           data={"device": "cpu", "max_bytes": 1 << 30})
    listener.close()


@pytest.fixture
def dying_peer(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "dying.sock"
    stop = threading.Event()
    t = threading.Thread(target=_dying_peer, args=(path, stop), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield path
    stop.set()
    t.join(timeout=5)


@pytest.mark.parametrize("batches", [1, 3])  # one call; a page's batches in flight at once
def test_a_server_that_dies_holding_the_request_is_told_apart(
        model_root: Path, dying_peer: Path, batches: int) -> None:
    weights = ModelRepository(model_root).manifest("str", 1).weights_path
    remote = RemoteRuntime(dying_peer, weights, timeout_s=10, wait_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(TensorServerDown) as err:
        remote.run_many_images([_batch()] * batches, {})
    assert err.value.during_call, err.value
    assert "died twice" in str(err.value)
    assert time.monotonic() - t0 < 10


def test_a_model_loaded_while_no_server_is_there_waits_only_its_wait(
        model_root: Path, tmp_path: Path) -> None:
    # A feeder started (or a plug-in model first used in a step) while the server is
    # killed or in its restart backoff: not the 30 s a busy server may need.
    weights = ModelRepository(model_root).manifest("str", 1).weights_path
    t0 = time.monotonic()
    with pytest.raises(TensorServerDown) as err:
        RemoteRuntime(tmp_path / "gone.sock", weights, timeout_s=60, wait_s=0.5)
    assert time.monotonic() - t0 < 5
    assert not err.value.during_call


def test_a_version_loaded_while_the_server_is_away_is_not_failed(
        model_root: Path, tmp_path: Path) -> None:
    """The server away is not the version's fault: marked FAILED, the registry would
    skip it, or send a canary's traffic to the active version, once the server is back."""
    from ocrq.models.registry import ModelRegistry
    from ocrq.models.states import Status
    from ocrq.settings import Settings

    root = tmp_path / "models"
    shutil.copytree(model_root, root)
    repo = ModelRepository(root)
    latest = repo.add_version("str", repo.manifest("str", 1).weights_path).version
    sock = tmp_path / "t.sock"
    reg = ModelRegistry(repo, Settings(model_root=root, threads=1, runtime="remote",
                                       tensor_socket=str(sock), tensor_wait_s=0.3))
    with pytest.raises(TensorServerDown):
        reg.get("str")
    with reg.using({"str": 1}), pytest.raises(TensorServerDown):  # a canary pinned
        reg.get("str")
    assert [s for s in reg.states() if s.status is Status.FAILED] == []
    proc = _spawn(sock, root)
    try:
        assert reg.get("str").version == latest
        with reg.using({"str": 1}):
            assert reg.get("str").version == 1  # the canary's own version
        assert {(s.version, s.status) for s in reg.states()} == \
            {(1, Status.READY), (latest, Status.READY)}
    finally:
        proc.kill()
        proc.wait()
