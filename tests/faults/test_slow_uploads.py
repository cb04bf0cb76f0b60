"""Uploads held open do not stall the intake behind its front (compose/nginx.conf).

granian gives a request to a Python thread once its headers are in and sets no
deadline on the body (emmett-framework/granian#728, wontfix): a client declaring
a Content-Length and then sending nothing holds a thread for as long as it likes,
and as many such clients as threads stall every submit. Here a real granian (1
process x 2 threads) runs behind a real nginx with the deployment's own config
(only the addresses, the temp paths and the body deadline changed); 20 stalled
uploads are opened against the front while ordinary submits go through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrq.cli.serve import start_web
from ocrq.localcluster import LocalCluster, free_port
from ocrq.settings import Settings
from tests.fixtures import encode, render_page

# nginx comes with scripts/test (scripts/services.sh installs it): no skip without it.
pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(180)]

CONF = Path(__file__).resolve().parents[2] / "compose" / "nginx.conf"
STALLED = 20  # more than the web has threads, ten times over
# The test's client_body_timeout (the deployment's: 15 s). Every submit below must
# answer well inside it: were nginx not buffering, the stalled uploads would hold the
# web's threads until this deadline closed them, and the submits would wait as long.
BODY_TIMEOUT_S = 10
SUBMIT_S = 1.0


def rendered(tmp: Path, listen: int, upstream: int) -> Path:
    text = CONF.read_text()
    for old, new in (("server web:8080;", f"server 127.0.0.1:{upstream};"),
                     ("listen 8080;", f"listen 127.0.0.1:{listen};"),
                     ("client_body_timeout 15s;", f"client_body_timeout {BODY_TIMEOUT_S}s;")):
        assert old in text, old
        text = text.replace(old, new)
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n    access_log off;\n" + temp, 1)
    out = tmp / "nginx.conf"
    out.write_text(text)
    return out


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def front(web_settings: Settings, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(the front's port, the web's port): granian 1 x 2 behind nginx."""
    cluster = LocalCluster(web_settings, log_dir=tmp_path)
    web_port, front_port = free_port(), free_port()
    start_web(cluster, "127.0.0.1", web_port, server="granian", processes=1, threads=2)
    conf = rendered(tmp_path, front_port, web_port)
    # As root, nginx's workers run as nobody, who cannot write a body over
    # client_body_buffer_size into pytest's 0700 temp dir: they run as root here.
    user = " user root;" if os.geteuid() == 0 else ""
    cluster.start_process("nginx", [
        shutil.which("nginx") or "nginx", "-p", str(tmp_path), "-c", str(conf), "-g",
        f"daemon off; pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'nginx.log'};{user}"],
        service=True)
    try:
        wait_port(web_port)
        wait_port(front_port)
        yield front_port, web_port
    finally:
        cluster.stop(grace_s=5)


def submit(port: int, body: bytes, timeout_s: float) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/jobs?name=r.png", data=body,
                                 headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stall(port: int, n: int, declared: int) -> list[socket.socket]:
    """``n`` uploads that declare ``declared`` bytes, send 100 and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /v1/jobs?name=x.png HTTP/1.1\r\nHost: x\r\nContent-Type: image/png"
                  f"\r\nContent-Length: {declared}\r\n\r\n".encode() + b"\x89PNG" * 25)
        socks.append(s)
    return socks


def test_stalled_uploads_cost_the_intake_nothing_behind_its_front(
        front: tuple[int, int]) -> None:
    front_port, web_port = front
    png = encode(render_page(["TOTAL 42.00"]))
    assert submit(front_port, png, 30)[0] == 202
    # A body over client_body_buffer_size (1 MiB) goes through a temp file.
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    large = cv2.imencode(".png", noise)[1].tobytes()
    assert len(large) > 1024 * 1024
    status, body = submit(front_port, large, 30)
    assert status == 202, body
    stalled = stall(front_port, STALLED, 50_000)
    t_stall = time.monotonic()
    try:
        time.sleep(0.5)
        for _ in range(3):  # every submit still goes through, at once
            t0 = time.monotonic()
            status, body = submit(front_port, png, 5)
            assert status == 202, body
            assert time.monotonic() - t0 < SUBMIT_S
        assert time.monotonic() - t_stall < BODY_TIMEOUT_S  # all before any deadline
        # The front closes each stalled upload after its body deadline, unanswered.
        time.sleep(max(0.0, BODY_TIMEOUT_S + 1.5 - (time.monotonic() - t_stall)))
        stalled[0].settimeout(5)
        assert stalled[0].recv(4096) == b""
    finally:
        for s in stalled:
            s.close()
    # A body over the front's limit is refused before it is sent, in the API's shape.
    big = stall(front_port, 1, 50 * 1024 * 1024)[0]
    big.settimeout(10)
    head = big.recv(4096)
    big.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:80]
    assert json.loads(head.split(b"\r\n\r\n", 1)[1])["error"]["code"] == \
        "request_entity_too_large"
    # Control: straight at the web, two stalled uploads (its two threads) stall every
    # submit. This is what the front is for; the day granian sets a body deadline of
    # its own, this line fails and the front may go.
    direct = stall(web_port, 2, 50_000)
    try:
        time.sleep(0.5)
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            submit(web_port, png, 3)
    finally:
        for s in direct:
            s.close()
