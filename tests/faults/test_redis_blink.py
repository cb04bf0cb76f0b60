"""Redis (broker and store, AOF on) restarted mid-run, about 2 s down: the blink
costs retries, not jobs. Every job succeeds with the in-process engine's text,
sends its final webhook, and the API agrees with the database."""

from __future__ import annotations

import pytest

from ocrq.chaos.rig import Rig
from tests.faults.conftest import submit_pages, wait_started

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 16


def test_a_redis_restart_mid_run_costs_no_job(rig: Rig, pages: list[tuple[bytes, str]]
                                              ) -> None:
    ids, expected = submit_pages(rig, pages, JOBS)
    wait_started(rig, ids)  # the first jobs worked on, the rest waiting in the queues
    assert rig.redis.restart(2.0) >= 2.0
    rig.wait_terminal(ids, timeout_s=240)
    rig.wait_webhooks(ids, timeout_s=60)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], audit
    assert audit.statuses == {"succeeded": JOBS}
