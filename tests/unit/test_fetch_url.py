"""image_url downloads: ocrq.webhooks.fetch against real servers on 127.0.0.1, and
the intake's answer (POST /v1/jobs through Flask's test client): every way a URL
can fail is a 4xx JSON error with its own code, never a 500, and never slow."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from ocrq.errors import ImageTooLarge, OcrqError
from ocrq.settings import Settings
from ocrq.webhooks import BadURL, FetchFailed, UnsafeURL, fetch
from tests.conftest import assert_api_error
from tests.unit.test_webhook_delivery import (
    LIMIT_RSS,
    Hostile,
    answer,
    gzip_bomb,
    gzip_member,
    huge,
    peak_rss_growth,
    trickle,
)
from web import create_app
from web.errors import STATUS

MiB = 1024 * 1024
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
       b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81"
       b"\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def _get(url: str, *, max_bytes: int = 32 * MiB, deadline_s: float = 5.0,
         allow_private: bool = True) -> bytes:
    return fetch(url, max_bytes=max_bytes, timeout_s=10.0, allow_private=allow_private,
                 deadline_s=deadline_s)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fails(url: str, exc_type: type[OcrqError], reason: str | None = None,
           **kwargs: object) -> OcrqError:
    t0 = time.monotonic()
    with pytest.raises(exc_type) as info:
        _get(url, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 3, "refused quickly"
    if reason is not None:
        assert info.value.details["reason"] == reason, info.value.to_dict()
    return info.value


# --- fetch ---------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:99999/a.png", "http://example.com:0/a.png", "http://h:abc/a.png",
    "http://[::1/a.png", "http://\u2603.example/a.png", "http://a\u200d.example/a.png",
    "http://xn--zz.example/a.png", "http://a..b/a.png", "http://-bad-.example/a.png",
    "http://" + "x" * 64 + ".example/a.png",
])
@pytest.mark.parametrize("allow_private", [False, True])
def test_malformed_urls_are_bad_url(url: str, allow_private: bool) -> None:
    err = _fails(url, BadURL, allow_private=allow_private)
    assert err.code == "bad_url"


def test_unreachable_urls_fail_with_their_reason() -> None:
    _fails(f"http://127.0.0.1:{_closed_port()}/a.png", FetchFailed, "connection_refused")
    for allow_private in (False, True):
        _fails("http://nothing.invalid/a.png", FetchFailed, "unresolvable",
               allow_private=allow_private)
    with Hostile(answer(404, {"Content-Length": "0"}, [])) as srv:
        err = _fails(srv.url, FetchFailed, "http_status")
        assert err.details["status"] == 404
    with Hostile(answer(302, {"Location": "/again", "Content-Length": "0"}, [])) as srv:
        _fails(srv.url, FetchFailed, "redirects")
    with Hostile(answer(302, {"Content-Length": "0"}, [])) as srv:  # no Location
        _fails(srv.url, FetchFailed, "http_status")


@pytest.mark.parametrize("location", ["http://[::1/a.png", "http://127.0.0.1:99999/a.png",
                                      "http://\u2603.example/a.png"])
def test_a_redirect_to_a_malformed_url_is_bad_url(location: str) -> None:
    with Hostile(answer(302, {"Location": location, "Content-Length": "0"}, [])) as srv:
        _fails(srv.url, BadURL)


def test_private_targets_stay_refused() -> None:
    with Hostile(answer(200, {"Content-Length": str(len(PNG))}, [PNG])) as srv:
        _fails(srv.url, UnsafeURL, allow_private=False)
        with Hostile(answer(302, {"Location": srv.url, "Content-Length": "0"}, [])) as hop:
            # a redirect is checked like the first URL
            _fails(hop.url.replace("127.0.0.1", "localhost"), UnsafeURL, allow_private=False)


def test_one_byte_every_5s_is_cut_at_the_deadline() -> None:
    """Each byte comes well within the 10 s socket timeout; the deadline ends it."""
    for text in (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 64,  # slow headers
                 b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 100):  # slow body
        with Hostile(trickle(5.0, text)) as slow:
            t0 = time.monotonic()
            with pytest.raises(FetchFailed) as info:
                _get(slow.url, deadline_s=6.0)
            took = time.monotonic() - t0
        assert 5.5 < took < 8.0, took
        assert info.value.details["reason"] == "deadline", info.value.to_dict()


def test_large_and_compressed_bodies_cost_little() -> None:
    # 2 GiB declared: refused at once; undeclared (chunked): cut at the limit.
    chunk = b"100000\r\n" + bytes(MiB) + b"\r\n"
    chunked = answer(200, {"Transfer-Encoding": "chunked"}, (chunk for _ in range(2048)))
    for reply in (huge(200), chunked):
        with Hostile(reply) as srv, peak_rss_growth() as grew, pytest.raises(ImageTooLarge):
            _get(srv.url, max_bytes=4 * MiB)
        assert grew[0] < LIMIT_RSS
    member = gzip_member(64)
    with Hostile(gzip_bomb(200, member)) as srv, peak_rss_growth() as grew:
        data = _get(srv.url)  # as sent: never decompressed (not an image, refused later)
    assert data == member * 16 and grew[0] < LIMIT_RSS + len(data) * 3
    assert b"accept-encoding: identity" in srv.heads[0].lower()


def test_an_image_is_fetched_through_a_redirect() -> None:
    with Hostile(answer(200, {"Content-Length": str(len(PNG))}, [PNG])) as img, \
            Hostile(answer(301, {"Location": img.url, "Content-Length": "0"}, [])) as hop:
        assert _get(hop.url) == PNG
        # The redirect's own body is never read: 2 GiB of gzip here.
        member = gzip_member(64)
        bomb = answer(301, {"Location": img.url, "Content-Encoding": "gzip",
                            "Content-Length": str(len(member) * 32)},
                      (member for _ in range(32)))
        with Hostile(bomb) as hop, peak_rss_growth() as grew:
            t0 = time.monotonic()
            assert _get(hop.url) == PNG
        assert time.monotonic() - t0 < 3 and grew[0] < LIMIT_RSS, grew


# --- the intake's answers ------------------------------------------------------------
@pytest.fixture
def url_client(web_settings: Settings) -> FlaskClient:
    """Private URLs allowed (the servers are on loopback), short limits."""
    s = web_settings.with_(allow_private_urls=True, webhook_timeout_s=10.0,
                           fetch_deadline_s=4.0, max_upload_bytes=4 * MiB)
    return create_app(s).test_client()


def _status(code: str) -> int:
    return STATUS.get(code, 400)


CASES: dict[str, tuple[Callable[[], str], str]] = {
    "port_99999": (lambda: "http://127.0.0.1:99999/a.png", "bad_url"),
    "bad_idn": (lambda: "http://\u2603.example/a.png", "bad_url"),
    "unresolvable": (lambda: "http://nothing.invalid/a.png", "fetch_failed"),
    "refused": (lambda: f"http://127.0.0.1:{_closed_port()}/a.png", "fetch_failed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unfetchable_image_urls_are_4xx(url_client: FlaskClient, web_counts: Callable,
                                        case: str) -> None:
    url, code = CASES[case]
    t0 = time.monotonic()
    resp = url_client.post("/v1/jobs", json={"image_url": url()})
    assert time.monotonic() - t0 < 3
    assert_api_error(resp, _status(code), code)
    assert 400 <= resp.status_code < 500
    assert web_counts() == (0, 0)


def test_slow_and_huge_image_urls_are_4xx(url_client: FlaskClient, web_counts: Callable
                                          ) -> None:
    with Hostile(trickle(1.0)) as slow:
        t0 = time.monotonic()
        resp = url_client.post("/v1/jobs", json={"image_url": slow.url})
        took = time.monotonic() - t0
    error = assert_api_error(resp, _status("fetch_failed"), "fetch_failed")
    assert error["reason"] == "deadline"
    # The view's deadline: OCRQ_FETCH_DEADLINE_S (4 s here) once web/jobs.py passes it
    # to fetch, else fetch's own default (Settings.fetch_deadline_s).
    assert took < Settings.fetch_deadline_s + 3, took
    with Hostile(huge(200)) as big:
        resp = url_client.post("/v1/jobs", json={"image_url": big.url})
    assert_api_error(resp, 413, "image_too_large")
    assert web_counts() == (0, 0)
