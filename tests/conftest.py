"""Shared pytest fixtures. Helpers append their own; keep each fixture small."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from redis import Redis
from werkzeug.test import TestResponse

from ocrq.cli.serve import upgrade
from ocrq.settings import Settings
from tests.fixtures import INVOICE_LINES, render_page
from web import create_app


@pytest.fixture(scope="session")
def invoice_page() -> np.ndarray:
    """A rendered invoice-like page (BGR uint8); treat as read-only."""
    page = render_page(INVOICE_LINES)
    page.flags.writeable = False  # shared across the session: fail loudly on mutation
    return page


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory):
    """A model repository materialised from the wheels, shared by the session."""
    from ocrq.models.repository import ModelRepository

    root = tmp_path_factory.mktemp("models")
    ModelRepository(root).ensure_defaults()
    return root


@pytest.fixture(scope="session")
def engine(model_root):
    """One in-process engine (ONNX Runtime, CPU) for the session."""
    from ocrq.engine import Engine
    from ocrq.settings import Settings

    return Engine.from_settings(Settings(model_root=model_root, threads=0))


# --- the Flask app with no workers (tests/unit/test_web_*.py) ------------------------
# Redis database of the web API tests, broker and store in one. No worker of any test
# heartbeats there (it is test_gpu_batching's broker), so the app sees no live worker.
# Nothing is flushed: each test's queue names carry a token and are deleted after it,
# job keys are random and expire, so a concurrent run of another module is left alone.
WEB_REDIS_DB = 14


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once (the project's upgrade); tests copy it."""
    path = tmp_path_factory.mktemp("web-db") / "migrated.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def web_settings(migrated_sqlite: Path, model_root: Path, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: its own database file and its own (empty) broker queues."""
    database = tmp_path / "ocrq.sqlite3"
    shutil.copy(migrated_sqlite, database)
    url = f"redis://127.0.0.1:6379/{WEB_REDIS_DB}"
    prefix = f"web-{uuid.uuid4().hex[:12]}-"
    yield Settings(model_root=model_root, database_url=f"sqlite:///{database}",
                   broker_url=url, redis_url=url, queue_gpu=f"{prefix}gpu",
                   queue_cpu=f"{prefix}cpu", queue_webhooks=f"{prefix}webhooks",
                   image_ttl_s=300, result_cache_ttl_s=300,
                   webhook_secret="test-secret", allow_private_urls=False)
    redis = Redis.from_url(url)
    for key in redis.scan_iter(match=f"*{prefix}*"):  # the queues and kombu's bindings
        redis.delete(key)
    redis.close()


@pytest.fixture
def web_app(web_settings: Settings) -> Flask:
    return create_app(web_settings)


@pytest.fixture
def web_counts(web_settings: Settings) -> Iterator[Callable[[], tuple[int, int]]]:
    """(job rows in the database, messages waiting in the broker's queues) right now."""
    s = web_settings
    broker = Redis.from_url(s.broker_url)
    database = s.database_url.removeprefix("sqlite:///")

    def counts() -> tuple[int, int]:
        with contextlib.closing(sqlite3.connect(database)) as conn:
            rows = conn.execute("SELECT COUNT(*) FROM ocrq_jobs").fetchone()[0]
        queued = sum(int(broker.llen(q)) for q in (s.queue_gpu, s.queue_cpu, s.queue_webhooks))
        return int(rows), queued

    yield counts
    broker.close()


def assert_api_error(resp: TestResponse, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the API's error body; returns its "error" object."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json, resp.headers.get("Content-Type")
    body = resp.get_json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return error
