"""MariaDB restarted mid-run: while it is down the API answers 503 with a JSON
body and Retry-After; workers retry their writes; afterwards every job has
succeeded once (one result row), with its webhook, nothing half-done."""

from __future__ import annotations

import time

import pytest
import requests

from ocrq.chaos.rig import Rig
from tests.faults.conftest import submit_pages, wait_started

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 16
DOWN_S = 4.0


def test_a_mariadb_restart_mid_run_costs_no_job(rig: Rig, pages: list[tuple[bytes, str]]
                                                ) -> None:
    assert rig.mariadb is not None
    ids, expected = submit_pages(rig, pages, JOBS)
    wait_started(rig, ids)
    t0 = time.monotonic()
    rig.mariadb.stop()
    data, _ = pages[0]
    r = requests.post(f"{rig.base}/v1/jobs", files={"image": ("down.png", data)}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) > 0
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - t0)))
    rig.mariadb.start()
    more, more_expected = submit_pages(rig, pages, 4, prefix="after")  # it recovered by itself
    ids, expected = ids + more, {**expected, **more_expected}
    rig.wait_terminal(ids, timeout_s=240)
    rig.wait_webhooks(ids, timeout_s=60)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], audit
    assert audit.statuses == {"succeeded": len(ids)}
