"""The two outbound requests: a webhook POST and an ``image_url`` GET.

Both go through the guard (every hop), connect to the address it approved,
run under one wall-clock :class:`~ocrq.webhooks.transport.Deadline`, send
``Accept-Encoding: identity`` and read bodies raw (a gzip bomb stays the few
bytes it is on the wire) and capped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from ocrq.errors import ImageTooLarge, OcrqError
from ocrq.settings import Settings
from ocrq.webhooks.guard import BadURL, FetchFailed, connect_address
from ocrq.webhooks.signing import signed_headers
from ocrq.webhooks.transport import TRANSPORT_ERRORS, Deadline, exchange, failure, read_raw

ERROR_BODY_BYTES = 200  # of a non-2xx webhook answer, kept in the delivery's error
BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                  requests.exceptions.MissingSchema)


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
            allow_private: bool, event_id: str = "") -> Attempt:
    """One signed POST; 2xx is success. Redirects are not followed (they could
    bypass the guard).

    ``timeout_s`` bounds the whole attempt (name lookup, connect, sending,
    the answer's headers). A 2xx answer's body is not read; of any other, at
    most :data:`ERROR_BODY_BYTES`, never decompressed.
    """
    t0 = time.perf_counter()
    status: int | None = None
    with Deadline(timeout_s) as deadline:
        try:
            status, head = _post(url, body, secret, allow_private, deadline, event_id)
            ok = 200 <= status < 300
            error = None if ok else f"HTTP {status}" + (f": {head}" if head else "")
        except OcrqError as exc:  # refused by the guard, or the deadline during the lookup
            ok, error = False, f"{exc.details.get('reason') or exc.code}: {exc.message}"
        except BAD_URL_ERRORS as exc:
            ok, error = False, f"bad_url: {type(exc).__name__}: {exc}"
        except TRANSPORT_ERRORS as exc:
            ok, error = False, ": ".join(failure(exc, deadline))
    return Attempt(ok, status, error, (time.perf_counter() - t0) * 1000)


def _post(url: str, body: bytes, secret: str, allow_private: bool, deadline: Deadline,
          event_id: str = "") -> tuple[int, str]:
    _, address = connect_address(url, allow_private, deadline.at)
    with exchange("POST", url, address, deadline, timeout=deadline.remaining(),
                  headers=signed_headers(secret, body, event_id=event_id),
                  data=body) as resp:
        deadline.remaining()  # the headers were not cut short by the deadline
        if 200 <= resp.status_code < 300:
            return resp.status_code, ""
        try:
            raw, _ = read_raw(resp, ERROR_BODY_BYTES)
        except TRANSPORT_ERRORS:  # the status is the answer; its body is a courtesy
            raw = b""
        text = raw.decode("utf-8", "replace")
        return resp.status_code, "".join(c if c.isprintable() else " " for c in text).strip()


def fetch(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool,
          deadline_s: float = Settings.fetch_deadline_s, max_redirects: int = 3) -> bytes:
    """GET an image URL under the guard: every redirect hop is checked, size bounded.

    ``timeout_s`` bounds each socket operation, ``deadline_s`` the whole
    download (lookups, redirects, body). Raises :class:`BadURL` (malformed),
    :class:`~ocrq.webhooks.guard.UnsafeURL` (refused), :class:`FetchFailed`
    (unreachable, refused, too slow, not HTTP 200; ``reason`` says which) or
    :class:`ImageTooLarge`; nothing else.
    """
    with Deadline(deadline_s) as deadline:
        try:
            return _get(url, max_bytes, timeout_s, allow_private, deadline, max_redirects)
        except BAD_URL_ERRORS as exc:
            raise BadURL(f"malformed URL {url!r}: {exc}", url=url) from exc
        except TRANSPORT_ERRORS as exc:
            reason, message = failure(exc, deadline)
            raise FetchFailed(f"image_url could not be fetched ({reason}): {message}",
                              reason=reason, url=url) from exc


def _get(url: str, max_bytes: int, timeout_s: float, allow_private: bool,
         deadline: Deadline, max_redirects: int) -> bytes:
    for _ in range(max_redirects + 1):
        _, address = connect_address(url, allow_private, deadline.at)
        with exchange("GET", url, address, deadline, headers={},
                      timeout=min(timeout_s, deadline.remaining())) as resp:
            if resp.is_redirect:
                url = _redirect(url, resp.headers["Location"])
                continue
            if resp.status_code != 200:
                raise FetchFailed(f"image_url answered HTTP {resp.status_code}",
                                  reason="http_status", status=resp.status_code, url=url)
            declared = resp.headers.get("Content-Length", "")
            too_large = ImageTooLarge(f"image_url body exceeds {max_bytes} bytes",
                                      limit=max_bytes)
            if declared.isdigit() and int(declared) > max_bytes:
                raise too_large
            data, more = read_raw(resp, max_bytes)
            if more:
                raise too_large
            deadline.remaining()  # not an answer cut short by the deadline
            return data
    raise FetchFailed(f"image_url redirected more than {max_redirects} times",
                      reason="redirects", url=url)


def _redirect(url: str, location: str) -> str:
    try:
        return str(requests.compat.urljoin(url, location))
    except ValueError as exc:  # e.g. an unclosed [IPv6 bracket
        raise BadURL(f"image_url redirected to a malformed URL {location!r}: {exc}",
                     url=url) from exc
