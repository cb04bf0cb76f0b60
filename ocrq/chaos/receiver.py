"""A webhook receiver that keeps a log of what it was sent, and can be taken down.

It answers 200 to every POST and records the event id
(``X-Ocrq-Event-Id``), the job id and status from the body, and whether the
signature verified. :meth:`Receiver.down` closes the listening socket (senders
get "connection refused", as from a receiver that is deployed anew);
:meth:`Receiver.up` listens again on the same port.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ocrq.webhooks import HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, verify


@dataclass(frozen=True)
class Call:
    event_id: str
    job_id: str
    status: str
    verified: bool
    at: float  # time.monotonic()


class Receiver:
    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret, self.host, self.port = secret, host, port
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._record(body, self.headers)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:  # one line per webhook: too many
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])  # 0 -> the port it got
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, body: bytes, headers: Any) -> None:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        ok = verify(self.secret, body, headers.get(HEADER_TIMESTAMP, ""),
                    headers.get(HEADER_SIGNATURE, ""))
        call = Call(headers.get(HEADER_EVENT_ID, ""), str(doc.get("id", "")),
                    str(doc.get("status", "")), ok, time.monotonic())
        with self._lock:
            self.calls.append(call)

    def by_job(self) -> dict[str, list[Call]]:
        with self._lock:
            calls = list(self.calls)
        out: dict[str, list[Call]] = {}
        for c in calls:
            out.setdefault(c.job_id, []).append(c)
        return out
