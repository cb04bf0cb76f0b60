"""Hostile webhook receivers against real worker processes: a 2 GB answer, a gzip
bomb (also as a redirect's body) and one byte every 5 s each cost the worker
process little memory and at most the deadline per attempt, and are given up
after the configured attempts with the reason recorded; a receiver that gets
the worker process killed every time is not redelivered forever. Per-business
secrets sign the deliveries.

Two workers (cluster_harness): one for the OCR steps, one for the webhooks
queue only, whose pool process is measured (its peak RSS, reset before each
case) and killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ocrq.pipeline import jobs
from ocrq.pipeline.state import Services
from ocrq.storage import jobs as store
from ocrq.webhooks import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify
from tests.integration.cluster_harness import Cluster, line_image, make_cluster
from tests.unit.test_webhook_delivery import (
    LIMIT_RSS,
    Hostile,
    answer,
    gzip_bomb,
    gzip_member,
    huge,
    peak_rss_growth,
    trickle,
    with_location,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]
OCR, HOOKS = "ocr1@test", "hooks1@test"
ATTEMPTS, DEADLINE_S, MAX_DELIVERIES = 3, 6, 2
SECRET, BID_SECRET = "hostile-suite-secret", "default-bid-secret"
ENV = {
    "OCRQ_WEBHOOK_SECRET": SECRET,
    "OCRQ_WEBHOOK_SECRETS": f"default={BID_SECRET}",  # the bid of the jobs below
    "OCRQ_ALLOW_PRIVATE_URLS": "1",  # the receivers are on loopback
    "OCRQ_WEBHOOK_MAX_ATTEMPTS": str(ATTEMPTS),
    "OCRQ_WEBHOOK_TIMEOUT_S": str(DEADLINE_S),
    "OCRQ_WEBHOOK_BACKOFF_S": "0.5",
    "OCRQ_WEBHOOK_BACKOFF_MAX_S": "1",
    "OCRQ_MAX_DELIVERIES": str(MAX_DELIVERIES),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(tmp_path_factory.mktemp("hostile"))
    c.env.update(ENV)
    try:
        c.start_worker("cpu", OCR, "gpu,cpu")
        c.start_worker("cpu", HOOKS, "webhooks")
        c.wait_ready(OCR)
        c.wait_ready(HOOKS)
        yield c
    finally:
        c.stop_all()


def _submit(c: Cluster, url: str) -> str:
    intake = Services(c.settings.with_(allow_private_urls=True))
    doc, _ = jobs.submit(intake, c.app, line_image("Paid 42"), "line.png", tid="ocr-upright",
                         callback_url=url)
    return str(doc["id"])


def _rows(c: Cluster, job_id: str, n: int, timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = store.deliveries(c.services.db, job_id)
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{len(rows)} of {n} deliveries recorded")


def _hooks_child(c: Cluster) -> psutil.Process:
    (child,) = psutil.Process(c.workers[HOOKS].pid).children()
    return child


def test_deliveries_are_signed_with_the_business_secret(cluster: Cluster) -> None:
    with Hostile(answer(200, {"Content-Length": "0"}, [])) as srv:
        job_id = _submit(cluster, srv.url)
        rows = _rows(cluster, job_id, 1, 120)
    head = dict(line.split(": ", 1) for line in srv.heads[0].decode().split("\r\n")[1:])
    ts, sig = head[HEADER_TIMESTAMP], head[HEADER_SIGNATURE]
    assert verify(BID_SECRET, srv.bodies[0], ts, sig)
    assert not verify(SECRET, srv.bodies[0], ts, sig)
    assert [(r.attempt, r.ok, r.status_code) for r in rows] == [(1, True, 200)]


CASES: dict[str, tuple[Callable[[], Callable[..., None]], str]] = {
    "2gb": (lambda: huge(500), "HTTP 500"),
    "gzip_bomb": (lambda: gzip_bomb(500, gzip_member()), "HTTP 500"),
    "redirect_with_gzip_bomb": (lambda: with_location(gzip_bomb(302, gzip_member())),
                                "HTTP 302"),
    "1_byte_every_5s": (lambda: trickle(5.0), f"deadline: no complete answer within "
                                              f"{DEADLINE_S} s"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_receiver_costs_little_and_is_given_up(cluster: Cluster, case: str) -> None:
    reply, reason = CASES[case]
    child = _hooks_child(cluster)
    with Hostile(reply()) as srv, peak_rss_growth(child.pid) as grew:
        t0 = time.monotonic()
        job_id = _submit(cluster, srv.url)
        _rows(cluster, job_id, ATTEMPTS, 180)
        took = time.monotonic() - t0
        time.sleep(3)  # past the longest backoff: no attempt after the last
    rows = store.deliveries(cluster.services.db, job_id)
    slowest = max(r.duration_ms for r in rows) / 1000
    print(f"\n{case}: {len(rows)} attempts in {took:.1f} s, slowest {slowest:.2f} s, "
          f"worker peak RSS +{grew[0] / 2**20:.1f} MiB")
    assert [(r.attempt, r.ok) for r in rows] == [(n, False) for n in range(1, ATTEMPTS + 1)]
    assert all((r.error or "").startswith(reason) for r in rows), [r.error for r in rows]
    assert rows[-1].error.endswith(f"; giving up after {ATTEMPTS} attempts"), rows[-1].error
    assert len(srv.heads) == ATTEMPTS  # every attempt reached the receiver
    assert slowest < min(35, DEADLINE_S + 2), slowest
    assert grew[0] < LIMIT_RSS, grew
    assert _hooks_child(cluster).pid == child.pid  # nothing killed it


def test_a_webhook_whose_worker_is_killed_every_time_is_given_up(cluster: Cluster) -> None:
    parent = psutil.Process(cluster.workers[HOOKS].pid)
    kills: list[int] = []

    def kill_the_sender(conn: Any, stop: threading.Event) -> None:
        for child in parent.children():
            os.kill(child.pid, signal.SIGKILL)
            kills.append(child.pid)
        stop.wait(30)

    with Hostile(kill_the_sender) as srv:
        job_id = _submit(cluster, srv.url)
        rows = _rows(cluster, job_id, 1, 240)
        time.sleep(8)  # a further redelivery would have reached the receiver by now
        posts = len(srv.heads)
    rows = store.deliveries(cluster.services.db, job_id)
    assert posts == MAX_DELIVERIES and len(set(kills)) == MAX_DELIVERIES, (posts, kills)
    assert [(r.attempt, r.ok) for r in rows] == [(1, False)]
    assert rows[0].error.startswith("worker_lost") and \
        f"died {MAX_DELIVERIES} times; giving up" in rows[0].error, rows[0].error
    log = Path(cluster.local.log_path(HOOKS) or "").read_text(errors="replace")
    assert f"attempt 1 was lost {MAX_DELIVERIES} times; giving up" in log
