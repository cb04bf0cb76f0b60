"""What one intake request costs the backing services, counted at the real ones
(issue 14's load work): the Redis commands a submit and a poll send (Redis'
MONITOR, filtered to this process's own connections), the connections it opens
(CLIENT LIST), and the SQL statements it runs (the engine's own events).

bench/load.py measures the rates; these pin the work per request, which is
what the tuning changed: one INSERT, then one Redis round trip for the image,
status + task ids and the message (a row whose intake died before that round trip
is failed `lost` by the sweeper, its Idempotency-Key freed), no result-channel
subscription, no database query per poll with API keys.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import psutil
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import event

from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage import keys as store
from web import create_app


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    page = np.full((120, 400, 3), 250, np.uint8)
    cv2.putText(page, "TOTAL 42.00", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    return cv2.imencode(".jpg", page)[1].tobytes()


def submit(client: FlaskClient, jpeg: bytes, headers: dict[str, str] | None = None) -> str:
    resp = client.post("/v1/jobs", data={"image": (io.BytesIO(jpeg), "r.jpg")},
                       content_type="multipart/form-data", headers=headers or {})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return str(resp.get_json()["id"])


def my_redis_ports(settings: Settings) -> set[int]:
    """Local ports of this process's open TCP connections to the Redis server (in the
    whole suite, earlier tests leave sockets the server already closed: CLOSE_WAIT)."""
    port = int(settings.redis_url.split(":")[-1].split("/")[0])
    return {c.laddr.port for c in psutil.Process(os.getpid()).net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


class Monitor:
    """Redis' MONITOR in a thread: every command the server runs, with its client."""

    def __init__(self, url: str) -> None:
        self.seen: list[tuple[int, list[str]]] = []
        self._client = Redis.from_url(url)
        self._mon = self._client.monitor()
        self._mon.__enter__()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                cmd: dict[str, Any] = self._mon.next_command()
                words = str(cmd["command"]).split()
                self.seen.append((int(cmd.get("client_port") or 0), words))
        except Exception:  # the connection closed: the test is over
            return

    def commands(self, ports: set[int], settle_s: float = 0.3) -> list[list[str]]:
        # MONITOR lines arrive after the commands ran (later on a loaded machine):
        # until none came for settle_s, 10 s at most.
        deadline, last, quiet_since = time.monotonic() + 10, -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(self.seen) != last:
                last, quiet_since = len(self.seen), time.monotonic()
            elif time.monotonic() - quiet_since >= settle_s:
                break
            time.sleep(0.05)
        return [words for port, words in self.seen if port in ports]

    def close(self) -> None:
        self._mon.__exit__()
        self._client.close()


@pytest.fixture
def monitor(web_settings: Settings) -> Iterator[Monitor]:
    m = Monitor(web_settings.redis_url)
    yield m
    m.close()


def sql_log(app: Flask) -> list[str]:
    """Every SQL statement the app's engine runs from now on (first words)."""
    seen: list[str] = []
    engine = app.extensions["ocrq"].db.engine
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(" ".join(statement.split()[:3])))
    return seen


def test_a_submit_is_one_insert_one_pipeline_and_one_push(
        web_app: Flask, web_settings: Settings, monitor: Monitor, jpeg: bytes) -> None:
    client = web_app.test_client()
    submit(client, jpeg)  # warm: pools, the live snapshot, the first connections
    # The router re-reads the live snapshot once a second (a pipeline of its own,
    # not per request): kept from doing so mid-test on a slow machine.
    web_app.extensions["ocrq"].router.ttl_s = 3600.0
    ports = my_redis_ports(web_settings)
    statements = sql_log(web_app)
    monitor.seen.clear()
    job_id = submit(client, jpeg)
    names = [words[0].strip('"').upper() for words in monitor.commands(ports)]
    # After the INSERT, one transaction (one round trip): image, status hash + TTL,
    # task ids + TTL, then the message. Before: MULTI/EXEC twice, an HGETALL of what
    # was just written, SUBSCRIBE/UNSUBSCRIBE.
    assert names == ["MULTI", "SET", "HSET", "EXPIRE", "SADD", "EXPIRE", "LPUSH", "EXEC"], names
    assert statements == ["INSERT INTO ocrq_jobs"], statements
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "queued"


def test_an_idempotency_key_is_looked_up_once_per_submit(
        web_app: Flask, jpeg: bytes) -> None:
    client = web_app.test_client()
    submit(client, jpeg)  # warm
    headers = {"Idempotency-Key": "load-once"}
    statements = sql_log(web_app)
    first = submit(client, jpeg, headers)  # before: the same SELECT twice, then the INSERT
    assert statements == ["SELECT ocrq_jobs.id, ocrq_jobs.bid,", "INSERT INTO ocrq_jobs"]
    statements.clear()
    resp = client.post("/v1/jobs", data={"image": (io.BytesIO(jpeg), "r.jpg")},
                       content_type="multipart/form-data", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["id"] == first
    assert statements == ["SELECT ocrq_jobs.id, ocrq_jobs.bid,"], statements


def test_requests_open_no_new_redis_connection(
        web_app: Flask, web_settings: Settings, jpeg: bytes) -> None:
    client = web_app.test_client()
    job_id = submit(client, jpeg)
    client.get(f"/v1/jobs/{job_id}")
    before = my_redis_ports(web_settings)
    admin = Redis.from_url(web_settings.redis_url)
    listed = {int(c["addr"].rsplit(":", 1)[1]) for c in admin.client_list()}
    admin.close()  # its own connection is this process's too
    assert before and before <= listed  # the server sees exactly these connections
    for _ in range(20):
        client.get(f"/v1/jobs/{submit(client, jpeg)}")
    assert my_redis_ports(web_settings) <= before


def keys_app(settings: Settings, cache_s: float) -> tuple[Flask, str, str]:
    """A keys-mode app, a key of bid "default" and that key's id."""
    app = create_app(settings.with_(auth="keys", auth_cache_s=cache_s))
    row, token = store.create_key(Database(settings.database_url), "default", "load test")
    return app, token, row.id


def test_polls_with_a_key_do_not_query_the_database(
        web_settings: Settings, jpeg: bytes) -> None:
    app, token, _ = keys_app(web_settings, 60.0)
    client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    job_id = submit(client, jpeg, auth)
    statements = sql_log(app)
    for _ in range(10):
        assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    assert statements == []
    bad = {"Authorization": "Bearer ocrq_0123456789abcdef_" + "x" * 43}
    assert client.get(f"/v1/jobs/{job_id}", headers=bad).status_code == 401


def test_a_revoked_key_is_refused_once_its_cache_entry_expires(
        web_settings: Settings, jpeg: bytes) -> None:
    app, token, key_id = keys_app(web_settings, 0.5)
    client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    job_id = submit(client, jpeg, auth)
    store.revoke_key(Database(web_settings.database_url), key_id)
    deadline = time.monotonic() + 10
    while client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works after 10 s"
        time.sleep(0.1)
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 401


def test_without_the_cache_every_call_looks_its_key_up(
        web_settings: Settings, jpeg: bytes) -> None:
    app, token, key_id = keys_app(web_settings, 0.0)
    client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    job_id = submit(client, jpeg, auth)
    statements = sql_log(app)
    client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert statements == ["SELECT ocrq_api_keys.id, ocrq_api_keys.bid,"], statements
    store.revoke_key(Database(web_settings.database_url), key_id)
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 401
