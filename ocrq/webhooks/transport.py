"""HTTP for webhooks and image_url downloads: pinned to the guard's address, bounded
in time as a whole, bodies read raw and capped.

Socket timeouts bound each operation, not the exchange: a server sending one
byte every few seconds never trips them. A :class:`Deadline` is a wall-clock
limit on the whole exchange (connect, TLS, sending, headers, body): when it
passes, a timer thread shuts down every socket the exchange opened, which wakes
whatever call is blocked on it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ocrq.webhooks.guard import FetchFailed

CHUNK = 64 * 1024
# What a failed read or send can raise through requests, urllib3 (raw reads) or below.
TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError,
                    http.client.HTTPException, OSError)
# Bodies are read as sent, never decompressed: identity is all ocrq asks for.
_HEADERS = {"User-Agent": "ocrq", "Accept": "*/*", "Accept-Encoding": "identity"}


class Deadline:
    """``seconds`` of wall-clock time from ``__enter__`` for everything in the block."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self.at = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:
            self.expired = self.expired or time.monotonic() >= self.at
            socks, self._socks = self._socks, []
        for s in socks:
            s.close()

    def remaining(self) -> float:
        """Seconds left; :class:`FetchFailed` (reason ``deadline``) when none are.

        Also call it after an exchange that seemed to end well: a socket shut down
        by the deadline reads as the end of the data, which can look like a
        complete (truncated) answer."""
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise FetchFailed(f"no complete answer within {self.seconds:g} s",
                              reason="deadline")
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (now, if it has)."""
        dup = sock.dup()  # ours to close: the fd number cannot be reused under the timer
        with self._lock:
            if not self.expired:
                self._socks.append(dup)
                return
        _shutdown(dup)
        dup.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer or by urllib3
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A urllib3 connection whose TCP socket (before any TLS) the deadline watches."""

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self._deadline.watch(sock)
        return sock


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


class _Adapter(HTTPAdapter):
    """Connect to ``address`` while the URL keeps its host name, under ``deadline``.

    The Host header, TLS SNI and the certificate check all use the name; only
    the TCP connection goes to the address the guard approved.
    """

    def __init__(self, address: str, hostname: str, https: bool, deadline: Deadline) -> None:
        self._address, self._hostname, self._https = address, hostname, https
        self._deadline = deadline
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._https:
            kwargs["server_hostname"] = self._hostname
            kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any
                                        ) -> HTTPConnectionPool:
        return self._watched(super().get_connection_with_tls_context(*args, **kwargs))

    def get_connection(self, *args: Any, **kwargs: Any) -> HTTPConnectionPool:
        return self._watched(super().get_connection(*args, **kwargs))  # requests < 2.32.2

    def _watched(self, pool: HTTPConnectionPool) -> HTTPConnectionPool:
        """The pool (this exchange's own) makes connections the deadline watches."""
        cls = _WatchedHTTPS if isinstance(pool, HTTPSConnectionPool) else _WatchedHTTP
        pool.ConnectionCls = functools.partial(cls, deadline=self._deadline)  # type: ignore[assignment]
        return pool

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        ip = f"[{self._address}]" if ":" in self._address else self._address
        netloc = f"{ip}:{parts.port}" if parts.port else ip
        request.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
        request.url = urlunsplit(parts._replace(netloc=netloc))
        return super().send(request, **kwargs)


@contextlib.contextmanager
def exchange(method: str, url: str, address: str, deadline: Deadline, *, timeout: float,
             headers: dict[str, str], data: bytes | None = None,
             ) -> Iterator[requests.Response]:
    """One request to ``url`` connected to ``address``, watched by ``deadline``; the
    response as soon as its headers are in (the body is left unread).

    Straight through the adapter, not a ``requests.Session``: a session reads
    the whole (decompressed) body of any redirect answer, even with
    ``allow_redirects=False``, and would take proxies from the environment,
    which would undo the pinning.
    """
    parts = urlsplit(url)
    adapter = _Adapter(address, parts.hostname or "", parts.scheme == "https", deadline)
    try:
        request = requests.Request(method, url, headers={**_HEADERS, **headers}, data=data)
        resp = adapter.send(request.prepare(), stream=True, timeout=timeout)
        try:
            yield resp
        finally:
            resp.close()
    finally:
        adapter.close()


def read_raw(resp: requests.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body as sent (never decompressed), and whether
    more followed."""
    buf = bytearray()
    for chunk in resp.raw.stream(min(CHUNK, limit + 1), decode_content=False):
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def failure(exc: BaseException, deadline: Deadline) -> tuple[str, str]:
    """(reason, message) of a transport error, as :class:`FetchFailed` names them."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = f"{type(exc).__name__}: {exc}"
    if deadline.expired or any(isinstance(x, FetchFailed) and x.details.get("reason")
                               == "deadline" for x in chain):
        return "deadline", f"no complete answer within {deadline.seconds:g} s ({text})"
    if any(isinstance(x, ConnectionRefusedError) for x in chain):
        return "connection_refused", text
    if any(isinstance(x, ssl.SSLError | requests.exceptions.SSLError) for x in chain):
        return "tls", text
    # urllib3's NewConnectionError is a ConnectTimeoutError, for history's sake only.
    if any(isinstance(x, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError)
           and not isinstance(x, urllib3.exceptions.NewConnectionError) for x in chain):
        return "timeout", text
    if any(isinstance(x, requests.ConnectionError | OSError) for x in chain):
        return "connection_failed", text
    return "protocol", text
