"""Fixtures for the pipeline tests: real Redis, real MariaDB (a fresh database
per session), real Celery worker processes and a real HTTP server.

A :class:`Stack` is one deployment: its own Redis db numbers (broker and
store), its own database, one worker process started through the real entry
point (``python -m workers.cpu``, by :mod:`ocrq.localcluster` as ``ocrq
serve`` starts it) consuming the gpu, cpu and webhooks queues, and web servers
created per test (``stack.web(**settings_overrides)``).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import requests
from redis import Redis
from werkzeug.serving import WSGIRequestHandler, make_server

from ocrq.cli.serve import upgrade
from ocrq.localcluster import LocalCluster, WorkerSpec
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from tests.databases import MARIADB, MARIADB_URL

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled"}
# Worker-side settings shared by every stack: short webhook backoff so retry tests
# take seconds; private URLs allowed in the *worker* because test receivers listen on
# 127.0.0.1 (the intake guard is exercised per test through the web settings).
WORKER_ENV = {
    "OCRQ_WEBHOOK_BACKOFF_S": "0.5",
    "OCRQ_WEBHOOK_BACKOFF_MAX_S": "2",
    "OCRQ_WEBHOOK_MAX_ATTEMPTS": "8",
    "OCRQ_WEBHOOK_TIMEOUT_S": "2",
    "OCRQ_WEBHOOK_SECRET": "test-secret",
    "OCRQ_ALLOW_PRIVATE_URLS": "1",
    "OCRQ_PLANS_FILE": str(Path(__file__).with_name("plans.yaml")),
    "OCRQ_RECOGNIZE_BATCH_LINES": "32",
    # Workers refuse pages wider than this; tests that need a job to fail in a worker
    # give the intake a larger limit (a real misconfiguration, not a test hook).
    "OCRQ_MAX_IMAGE_SIDE": "4000",
    # The sweeper has its own tests (test_sweeper.py); here it could fail and purge
    # the stale rows test_retention_purge writes before the test's own purge runs.
    "OCRQ_SWEEP_INTERVAL_S": "0",
}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # polling would flood the log
        pass


class Stack:
    def __init__(self, name: str, database_url: str, broker_db: int, store_db: int,
                 tmp: Path, split: bool = False) -> None:
        # split: a GPU worker (python -m workers.gpu; falls back to CPU here) on the gpu
        # queue and a CPU worker on cpu+webhooks, so steps really cross queues.
        self.name, self.tmp, self.split = name, tmp, split
        env = {**os.environ, **WORKER_ENV,
               "OCRQ_DATABASE_URL": database_url,
               "OCRQ_BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
               "OCRQ_REDIS_URL": f"redis://127.0.0.1:6379/{store_db}"}
        self.env = env
        self.settings = Settings.from_env(env)
        self.broker = Redis.from_url(self.settings.broker_url)
        self.store = Redis.from_url(self.settings.redis_url)
        self.cluster = LocalCluster(self.settings, environ=env)
        self._servers: list[Any] = []
        self.services = Services(self.settings)

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        upgrade(self.settings.database_url)
        self.broker.flushdb()
        self.store.flushdb()
        kinds = [("gpu", "gpu"), ("cpu", "cpu,webhooks")] if self.split else \
            [("cpu", "gpu,cpu,webhooks")]
        for kind, queues in kinds:
            spec = WorkerSpec(kind, f"test-{self.name}-{kind}-{os.getpid()}@localhost", queues)
            self.cluster.start_worker(spec, log=self.tmp / f"worker-{self.name}-{kind}.log")
        self.cluster.wait_ready()

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob(f"worker-{self.name}*.log")))

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
        self.cluster.stop()

    def reset(self) -> None:
        """Per-test reset: empty tables and the store db (the broker db keeps its bindings)."""
        from sqlalchemy import text

        with self.services.db.session() as s:
            for table in ("ocrq_webhook_deliveries", "ocrq_results", "ocrq_jobs"):
                s.execute(text(f"DELETE FROM {table}"))
        for key in self.store.scan_iter("ocrq:*"):
            self.store.delete(key)

    # --- web -----------------------------------------------------------------------
    def web(self, **overrides: Any) -> str:
        """Start the Flask app (real HTTP, werkzeug threaded server); returns its base URL."""
        from web import create_app

        app = create_app(self.settings.with_(**{"allow_private_urls": False, **overrides}))
        srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self._servers.append(srv)
        self.app = app
        return f"http://127.0.0.1:{srv.server_port}"

    # --- helpers -------------------------------------------------------------------
    def wait(self, base: str, job_id: str, timeout_s: float = 120,
             until: set[str] = TERMINAL) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = requests.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
            if doc["status"] in until:
                return doc
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {doc['status']} after {timeout_s}s")

    def queued_messages(self) -> int:
        s = self.settings
        return sum(int(self.broker.llen(q)) for q in (s.queue_gpu, s.queue_cpu,
                                                       s.queue_webhooks))

    def job_rows(self) -> int:
        from ocrq.storage.jobs import count_jobs

        return count_jobs(self.services.db)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    name = f"ocrq_test_{secrets.token_hex(4)}"
    conn = pymysql.connect(**MARIADB)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield f"{MARIADB_URL}/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


@pytest.fixture(scope="session")
def stack(mariadb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The MariaDB-backed stack (the production shape)."""
    s = Stack("mariadb", mariadb_url, 6, 7, tmp_path_factory.mktemp("stack-mariadb"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The one-machine default (a SQLite file), with separate GPU and CPU workers."""
    tmp = tmp_path_factory.mktemp("stack-sqlite")
    s = Stack("sqlite", f"sqlite:///{tmp / 'ocrq.sqlite3'}", 8, 9, tmp, split=True)
    try:
        s.start()
        yield s
    finally:
        s.stop()
