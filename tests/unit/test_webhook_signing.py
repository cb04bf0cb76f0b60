from __future__ import annotations

import hashlib
import hmac

import pytest

from ocrq.pipeline.canvas import batches
from ocrq.webhooks import UnsafeURL, backoff_s, check_url, sign, signed_headers, verify


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"j1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, body) == f"v1={expected}"
    h = signed_headers("s3cret", body, now=1700000000)
    assert verify("s3cret", body, h["X-Ocrq-Timestamp"], h["X-Ocrq-Signature"],
                  now=1700000010)
    assert not verify("s3cret", body + b"x", h["X-Ocrq-Timestamp"], h["X-Ocrq-Signature"],
                      now=1700000010)
    # Replayed long after: refused even with a valid MAC.
    assert not verify("s3cret", body, h["X-Ocrq-Timestamp"], h["X-Ocrq-Signature"],
                      now=1700000000 + 301)
    assert not verify("s3cret", body, "not-a-number", h["X-Ocrq-Signature"])


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_s(a, 2.0, 20.0) for a in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 20.0]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://localhost:8080/", "http://10.0.0.5/", "http://192.168.1.1/",
    "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
    "http://[fe80::1]/", "http://0.0.0.0/", "http://[::ffff:10.0.0.1]/",
    "http://metadata.google.internal/", "file:///etc/passwd", "gopher://example.com/",
])
def test_url_guard_refuses_internal_targets(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, allow_private=False)


def test_url_guard_allows_public_and_explicitly_private() -> None:
    check_url("http://8.8.8.8/hook", allow_private=False)  # literal: no DNS needed
    check_url("http://127.0.0.1:9/hook", allow_private=True)
    with pytest.raises(UnsafeURL):
        check_url("ftp://127.0.0.1/", allow_private=True)  # scheme is always checked


def test_recognition_batches_cover_all_lines() -> None:
    assert batches(0, 32) == []
    assert batches(1, 32) == [(0, 1)]
    assert batches(200, 32)[-1] == (192, 200) and len(batches(200, 32)) == 7


def test_checked_address_is_returned_for_pinning():
    assert check_url("https://8.8.8.8/hook", allow_private=False) == "8.8.8.8"
    assert check_url("http://127.0.0.1:9/hook", allow_private=True) is None


def test_pinned_session_connects_to_the_checked_address_keeping_the_host_name():
    """DNS rebinding: the request goes to the address the guard approved, not to
    whatever a second lookup of the name would answer (here: nothing at all)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from ocrq.webhooks.transport import Deadline, exchange

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url = f"http://receiver.invalid:{port}/hook"  # .invalid never resolves
        with Deadline(5) as deadline, exchange("POST", url, "127.0.0.1", deadline, timeout=5,
                                               headers={}, data=b"{}") as resp:
            assert resp.status_code == 204
        assert seen == [f"receiver.invalid:{port}"]
    finally:
        server.shutdown()


def test_default_secret_is_warned_about(caplog):
    from ocrq.settings import Settings
    from ocrq.webhooks import warn_if_default_secret

    with caplog.at_level("WARNING", logger="ocrq.webhooks"):
        assert warn_if_default_secret(Settings().webhook_secret)
        assert not warn_if_default_secret("s3cr3t-of-our-own")
    assert len(caplog.records) == 1 and "OCRQ_WEBHOOK_SECRET" in caplog.text
