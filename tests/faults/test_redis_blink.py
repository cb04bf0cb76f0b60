"""Redis (broker and store, AOF on) restarted mid-run, about 2 s down: the blink
costs retries, not jobs. Every job succeeds with the in-process engine's text,
sends its final webhook, and the API agrees with the database."""

from __future__ import annotations

import time

import pytest

from ocrq.chaos.rig import Rig

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 16


def test_a_redis_restart_mid_run_costs_no_job(rig: Rig, pages: list[tuple[bytes, str]]
                                              ) -> None:
    ids, expected = [], {}
    for i in range(JOBS):
        data, text = pages[i % len(pages)]
        job_id = rig.submit(data, f"p{i}.png")
        ids.append(job_id)
        expected[job_id] = text
    # Restart while the first jobs are being worked on and the rest wait in the queues.
    while not any(rig.api(i)["status"] != "queued" for i in ids):
        time.sleep(0.05)
    down = rig.redis.restart(2.0)
    assert down >= 2.0
    rig.wait_terminal(ids, timeout_s=240)
    rig.wait_webhooks(ids, timeout_s=60)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], (audit, rig.cluster.processes[rig.specs()[0].node].log_tail())
    assert audit.statuses == {"succeeded": JOBS}
