"""Signed webhooks and the outbound URL guard.

Signature: ``X-Ocrq-Signature: v1=<hex>`` where hex is HMAC-SHA256 with the
shared secret over ``f"{timestamp}.".encode() + body`` and the timestamp
(Unix seconds) is sent in ``X-Ocrq-Timestamp``. A receiver checks it with::

    from ocrq.webhooks import verify
    ok = verify(secret, request.body,
                request.headers["X-Ocrq-Timestamp"], request.headers["X-Ocrq-Signature"])

``verify`` compares in constant time and rejects timestamps older than
``tolerance_s`` (replays). The same guard (:func:`check_url`) protects
``callback_url`` and ``image_url``: loopback, private, link-local (cloud
metadata 169.254.169.254 included), multicast, reserved and unspecified
addresses are refused unless ``settings.allow_private_urls``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from ocrq.errors import ImageTooLarge, OcrqError

HEADER_TIMESTAMP = "X-Ocrq-Timestamp"
HEADER_SIGNATURE = "X-Ocrq-Signature"
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


DEFAULT_SECRET = "change-me"


def warn_if_default_secret(secret: str) -> bool:
    """Log a warning when webhooks would be signed with the shipped default key."""
    if secret != DEFAULT_SECRET:
        return False
    logging.getLogger(__name__).warning(
        "OCRQ_WEBHOOK_SECRET is the default %r: receivers cannot trust the signatures; "
        "set a secret of your own", DEFAULT_SECRET)
    return True


class UnsafeURL(OcrqError):
    code = "unsafe_url"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = int(now if now is not None else time.time())
    return {
        "Content-Type": "application/json",
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: sign(secret, ts, body),
    }


def verify(secret: str, body: bytes, timestamp: str, signature: str,
           tolerance_s: int = 300, now: float | None = None) -> bool:
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def check_url(url: str, allow_private: bool) -> str | None:
    """Raise :class:`UnsafeURL` unless ``url`` is http(s) to a public address.

    Every address the host resolves to must be public (a host with one private
    A record is refused). Returns the checked address to connect to (None when
    private addresses are allowed): the request is pinned to it, so a second
    DNS answer (rebinding) cannot send it elsewhere.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"URL must be http(s) with a host: {url!r}", url=url)
    if allow_private:
        return None
    host = parts.hostname.rstrip(".").lower()
    if host in _METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"URL host {host!r} is not allowed", url=url)
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise UnsafeURL(f"URL host {host!r} does not resolve ({exc})", url=url) from exc
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_global or addr.is_multicast:
            raise UnsafeURL(f"URL host {host!r} resolves to non-public address {addr}",
                            url=url, address=str(addr))
    return str(infos[0][4][0]).split("%")[0]


class _PinnedAdapter(HTTPAdapter):
    """Connect to ``address`` while the URL keeps its host name.

    The Host header, TLS SNI and the certificate check all use the name; only
    the TCP connection goes to the address :func:`check_url` approved.
    """

    def __init__(self, address: str, hostname: str, https: bool) -> None:
        self._address, self._hostname, self._https = address, hostname, https
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._https:
            kwargs["server_hostname"] = self._hostname
            kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        ip = f"[{self._address}]" if ":" in self._address else self._address
        netloc = f"{ip}:{parts.port}" if parts.port else ip
        request.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
        request.url = urlunsplit(parts._replace(netloc=netloc))
        return super().send(request, **kwargs)


def _session(url: str, address: str | None) -> requests.Session:
    session = requests.Session()
    if address is not None:
        session.trust_env = False  # a proxy from the environment would undo the pinning
        parts = urlsplit(url)
        adapter = _PinnedAdapter(address, parts.hostname or "", parts.scheme == "https")
        session.mount(f"{parts.scheme}://", adapter)
    return session


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before attempt ``attempt + 1``: base, 2*base, 4*base, ... capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempt - 1)))


@dataclass
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


def deliver(url: str, body: bytes, secret: str, *, timeout_s: float,
            allow_private: bool) -> Attempt:
    """One POST; 2xx is success. Redirects are not followed (they could bypass the guard)."""
    t0 = time.perf_counter()
    try:
        address = check_url(url, allow_private)
        with _session(url, address) as session:
            resp = session.post(url, data=body, headers=signed_headers(secret, body),
                                timeout=timeout_s, allow_redirects=False)
        ok = 200 <= resp.status_code < 300
        err = None if ok else f"HTTP {resp.status_code}"
        return Attempt(ok, resp.status_code, err, (time.perf_counter() - t0) * 1000)
    except (requests.RequestException, UnsafeURL) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}",
                       (time.perf_counter() - t0) * 1000)


def fetch(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool,
          max_redirects: int = 3) -> bytes:
    """GET an image URL under the guard: every redirect hop is checked, size bounded."""
    for _ in range(max_redirects + 1):
        address = check_url(url, allow_private)
        with _session(url, address) as session, session.get(
                url, stream=True, timeout=timeout_s, allow_redirects=False) as resp:
            if resp.is_redirect:
                url = requests.compat.urljoin(url, resp.headers["Location"])
                continue
            if resp.status_code != 200:
                raise UnsafeURL(f"image_url answered HTTP {resp.status_code}", url=url)
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise ImageTooLarge(f"image_url body exceeds {max_bytes} bytes",
                                        limit=max_bytes)
                chunks.append(chunk)
            return b"".join(chunks)
    raise UnsafeURL(f"too many redirects fetching {url!r}", url=url)
