"""Signed webhooks delivered by the worker to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from ocrq.storage import jobs as store
from ocrq.webhooks import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify
from tests.fixtures import encode, render_page
from tests.integration.conftest import WORKER_ENV, Stack

pytestmark = pytest.mark.services
SECRET = WORKER_ENV["OCRQ_WEBHOOK_SECRET"]


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                calls.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int = 1, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.calls) >= n, f"{len(self.calls)} webhook calls"


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode(render_page(["Paid in full"]), "png")


@pytest.fixture
def st(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack


def _submit(base: str, png: bytes, callback: str) -> str:
    r = requests.post(f"{base}/v1/jobs", files={"image": ("p.png", png, "image/png")},
                      data={"callback_url": callback}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _first_delivery(st: Stack, data: bytes, **web: object) -> tuple[str, dict, bytes]:
    """Submit ``data`` with a callback to a local receiver; the job id and the
    headers and body of the first POST it gets."""
    receiver = Receiver()
    try:
        base = st.web(allow_private_urls=True, **web)  # the receiver is on loopback
        job_id = _submit(base, data, receiver.url)
        receiver.wait(1)
    finally:
        receiver.close()
    headers, body = receiver.calls[0]
    return job_id, headers, body


def test_webhook_delivered_and_signature_verifies(st: Stack, png: bytes) -> None:
    job_id, headers, body = _first_delivery(st, png)
    assert verify(SECRET, body, headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE])
    assert not verify(SECRET, body + b" ", headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE])
    assert not verify("other-secret", body, headers[HEADER_TIMESTAMP],
                      headers[HEADER_SIGNATURE])
    doc = json.loads(body)
    assert doc["id"] == job_id and doc["status"] == "succeeded"
    assert doc["result"]["lines"][0]["text"] == "Paid in full"
    rows = store.deliveries(st.services.db, job_id)
    assert [(d.attempt, d.ok, d.status_code) for d in rows] == [(1, True, 200)]


def test_receiver_down_then_up_is_delivered_after_retries(st: Stack, png: bytes) -> None:
    with socket.socket() as s:  # a port with nobody listening (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = st.web(allow_private_urls=True)
    job_id = _submit(base, png, f"http://127.0.0.1:{port}/hook")
    deadline = time.monotonic() + 60
    while len(store.deliveries(st.services.db, job_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    receiver = Receiver(port)
    try:
        receiver.wait(1)
    finally:
        receiver.close()
    headers, body = receiver.calls[0]
    assert verify(SECRET, body, headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE])
    time.sleep(0.3)  # the worker records the successful attempt right after the POST
    rows = store.deliveries(st.services.db, job_id)
    assert [d.attempt for d in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= 3 and rows[-1].ok and rows[-1].status_code == 200
    assert all(not d.ok and "Connection" in (d.error or "") for d in rows[:-1])
    # Exponential backoff: 0.5 s, 1 s, 2 s (capped) between attempts in the test settings.
    gaps = [(b.created_at - a.created_at).total_seconds()
            for a, b in zip(rows, rows[1:], strict=False)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps


def test_failed_job_is_reported_by_webhook(st: Stack) -> None:
    """Intake accepts a 4200 px wide page, the workers (limit 4000 px) refuse it."""
    wide = encode(render_page(["wide"], width=4200), "png")
    job_id, headers, body = _first_delivery(st, wide, max_image_side=20_000)
    assert verify(SECRET, body, headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE])
    doc = json.loads(body)
    assert (doc["id"], doc["status"], doc["result"]) == (job_id, "failed", None)
    assert doc["error"]["code"] == "image_too_large" and doc["error"]["task"] == "ocrq.detect"
