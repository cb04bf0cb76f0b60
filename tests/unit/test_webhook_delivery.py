"""ocrq.webhooks.deliver against hostile receivers: real TCP servers on 127.0.0.1 in
threads (a 2 GB answer, a gzip bomb, one byte every 5 s, a receiver that never
reads). Each attempt must cost little memory and end by its deadline.

The servers and the memory probe are also used by test_fetch_url.py and the
worker-level tests (tests/integration/test_webhook_hostile.py).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from ocrq.webhooks import deliver

MiB = 1024 * 1024
LIMIT_RSS = 50 * MiB
_ZEROS = bytes(MiB)


# --- hostile servers -----------------------------------------------------------------
class Hostile:
    """A TCP server on 127.0.0.1; every connection: read the request (head, and the
    body unless ``read_body`` is False), record both, then ``reply(conn, stop)``."""

    def __init__(self, reply: Callable[[socket.socket, threading.Event], None],
                 read_body: bool = True) -> None:
        self.reply, self.read_body = reply, read_body
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # timeout (check stop) or closed
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(60)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.heads.append(head)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while self.read_body and len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            self.bodies.append(body)
            self.reply(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def answer(status: int, headers: dict[str, str], body: Iterable[bytes]
           ) -> Callable[[socket.socket, threading.Event], None]:
    def reply(conn: socket.socket, stop: threading.Event) -> None:
        lines = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        conn.sendall("\r\n".join(lines).encode())
        for chunk in body:
            if stop.is_set():
                return
            conn.sendall(chunk)
    return reply


def huge(status: int, size: int = 2 * 1024 * MiB) -> Callable[..., None]:
    """``size`` bytes of zeros (2 GiB), streamed from one 1 MiB buffer."""
    return answer(status, {"Content-Length": str(size), "Content-Type": "application/json"},
                  (_ZEROS for _ in range(size // MiB)))


def gzip_member(mib: int = 128) -> bytes:
    """One gzip member of ``mib`` MiB of zeros (about 1/1000 of that on the wire)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join([*(z.compress(_ZEROS) for _ in range(mib)), z.flush()])


def gzip_bomb(status: int, member: bytes, copies: int = 16) -> Callable[..., None]:
    """``copies`` gzip members back to back: 2 GiB once decompressed."""
    return answer(status, {"Content-Encoding": "gzip", "Content-Type": "application/json",
                           "Content-Length": str(len(member) * copies)},
                  (member for _ in range(copies)))


def with_location(reply: Callable[..., None], location: str = "http://127.0.0.1:9/x"
                  ) -> Callable[..., None]:
    """``reply`` with a Location header added to its head (a redirect, if a 3xx)."""
    def wrapped(conn: socket.socket, stop: threading.Event) -> None:
        class Sock:
            def sendall(self, data: bytes) -> None:
                if data.startswith(b"HTTP/1.1 "):
                    data = data.replace(b"\r\n", f"\r\nLocation: {location}\r\n".encode(), 1)
                conn.sendall(data)
        reply(Sock(), stop)
    return wrapped


def trickle(interval_s: float, text: bytes = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 64
            ) -> Callable[..., None]:
    """One byte every ``interval_s``: no socket timeout ever trips."""
    def reply(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(text)):
            conn.sendall(text[i:i + 1])
            if stop.wait(interval_s):
                return
    return reply


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(120)  # reads nothing more, answers nothing


# --- memory probe --------------------------------------------------------------------
def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@contextlib.contextmanager
def peak_rss_growth(pid: int | str = "self") -> Iterator[list[int]]:
    """How far (bytes) the process's peak RSS rose above its RSS at the start of the
    block: the kernel's high-water mark, reset at the start (clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    start = _status_kib(pid, "VmRSS")
    out: list[int] = []
    yield out
    out.append((_status_kib(pid, "VmHWM") - start) * 1024)


def _deliver(url: str, timeout_s: float = 10.0) -> tuple[object, float, int]:
    t0 = time.monotonic()
    with peak_rss_growth() as grew:
        res = deliver(url, b'{"id":"j1"}' * 10, "s3cret", timeout_s=timeout_s,
                      allow_private=True)
    return res, time.monotonic() - t0, grew[0]


# --- tests ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 500])
def test_a_2gb_answer_is_not_read(status: int) -> None:
    with Hostile(huge(status)) as srv:
        res, took, grew = _deliver(srv.url)
    assert took < 5 and grew < LIMIT_RSS, (took, grew)
    assert res.status_code == status and res.ok == (status == 200)
    if status == 500:
        assert res.error.startswith("HTTP 500") and len(res.error) < 300, res.error
    assert b"accept-encoding: identity" in srv.heads[0].lower()


@pytest.fixture(scope="module")
def member() -> bytes:
    return gzip_member()


@pytest.mark.parametrize("status", [200, 500])
def test_a_gzip_bomb_is_never_decompressed(status: int, member: bytes) -> None:
    with Hostile(gzip_bomb(status, member)) as srv:
        res, took, grew = _deliver(srv.url)
    assert took < 5 and grew < LIMIT_RSS, (took, grew)
    assert res.status_code == status and res.ok == (status == 200)


def test_a_redirect_with_a_bomb_for_a_body_is_not_read(member: bytes) -> None:
    """requests.Session reads a redirect's whole body (decompressed), even with
    allow_redirects=False: deliveries must not go through one."""
    with Hostile(with_location(gzip_bomb(302, member))) as srv:
        res, took, grew = _deliver(srv.url)
    assert took < 5 and grew < LIMIT_RSS, (took, grew)
    assert not res.ok and res.status_code == 302 and res.error.startswith("HTTP 302")


def test_one_byte_every_5s_is_cut_at_the_deadline() -> None:
    """The socket timeout (the whole 6 s) never trips: a byte comes every 5 s."""
    with Hostile(trickle(5.0)) as srv:
        res, took, grew = _deliver(srv.url, timeout_s=6.0)
    assert 5.5 < took < 8.0, took
    assert not res.ok and res.status_code is None
    assert res.error.startswith("deadline: no complete answer within 6 s"), res.error
    assert grew < LIMIT_RSS


def test_a_receiver_that_never_reads_the_body_is_cut_at_the_deadline() -> None:
    """Sending blocks once the socket buffers are full: the deadline ends it too."""
    with Hostile(silent, read_body=False) as srv:
        t0 = time.monotonic()
        res = deliver(srv.url, b"x" * (64 * MiB), "s3cret", timeout_s=3.0, allow_private=True)
        took = time.monotonic() - t0
    assert 2.5 < took < 5.0, took
    assert not res.ok and res.error.startswith("deadline"), res.error


def test_refused_and_unresolvable_receivers_are_recorded_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once closed
    res = deliver(f"http://127.0.0.1:{port}/hook", b"{}", "k", timeout_s=5, allow_private=True)
    assert not res.ok and res.error.startswith("connection_refused"), res.error
    res = deliver("http://receiver.invalid/hook", b"{}", "k", timeout_s=5, allow_private=True)
    assert not res.ok and res.error.startswith("unresolvable"), res.error
    res = deliver("http://127.0.0.1:99999/hook", b"{}", "k", timeout_s=5, allow_private=True)
    assert not res.ok and res.error.startswith("bad_url"), res.error
    res = deliver("http://127.0.0.1:9/hook", b"{}", "k", timeout_s=5, allow_private=False)
    assert not res.ok and res.error.startswith("unsafe_url"), res.error


def test_a_2xx_is_delivered_and_signed() -> None:
    with Hostile(answer(204, {"Content-Length": "0"}, [])) as srv:
        res, took, _ = _deliver(srv.url)
    assert res.ok and res.status_code == 204 and res.error is None
    head = srv.heads[0].lower()
    assert b"x-ocrq-signature: v1=" in head and b"x-ocrq-timestamp: " in head
