"""Redis flushed mid-run (a lost broker: queues, unacked messages, images, cache
gone): every job still reaches a terminal status, succeeded with the right
text or failed with a reason; none stays queued or running; jobs submitted
afterwards succeed."""

from __future__ import annotations

import time

import pytest

from ocrq.chaos.rig import Rig
from tests.faults.conftest import submit_pages, wait_started

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 16


def test_a_flushed_redis_leaves_no_job_unfinished(rig: Rig, pages: list[tuple[bytes, str]]
                                                  ) -> None:
    ids, expected = submit_pages(rig, pages, JOBS)
    wait_started(rig, ids)
    rig.redis.flush()
    time.sleep(3 * rig.settings.heartbeat_ttl_s / 3)  # workers heartbeat (and declare) again
    after, after_expected = submit_pages(rig, pages, 4, prefix="after")
    rows = rig.wait_terminal(ids + after, timeout_s=180)
    failed = {i: "lost" for i in ids if rows[i].status == "failed"}
    for i in failed:
        # lost: the sweeper found it running without its image; image_expired: a step
        # redelivered after the flush found it gone; deadline_exceeded: the last resort.
        assert rows[i].error and rows[i].error["code"] in (
            "lost", "image_expired", "deadline_exceeded"), rows[i].error
        failed[i] = rows[i].error["code"]
    rig.wait_webhooks(ids + after, timeout_s=60)
    audit = rig.audit(ids + after, {**expected, **after_expected}, failed)
    assert audit.problems == [], audit
    assert all(rows[i].status == "succeeded" for i in after), audit
