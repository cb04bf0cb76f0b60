"""The webhook receiver goes away, then comes back: every job's final webhook is
received at least once, signed, with its stable event id (a duplicate is
recognisable by it). Down for three times the longest retry interval (within
one round of attempts), and down for longer than the whole retry window (the
sweeper starts a new round after OCRQ_WEBHOOK_REDRIVE_AFTER_S)."""

from __future__ import annotations

import time

import pytest

from ocrq.chaos.rig import Rig
from ocrq.storage import jobs as store
from ocrq.webhooks import backoff_s
from tests.faults.conftest import submit_pages

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 8


def retry_window_s(rig: Rig) -> float:
    """From the first attempt of a webhook to its last (one round)."""
    s = rig.settings
    return sum(backoff_s(a, s.webhook_backoff_s, s.webhook_backoff_max_s)
               for a in range(1, s.webhook_max_attempts))


@pytest.mark.parametrize("longer_than_the_window", [False, True])
def test_webhooks_survive_the_receiver_going_away(
        rig: Rig, pages: list[tuple[bytes, str]], longer_than_the_window: bool) -> None:
    down_s = retry_window_s(rig) + 4 if longer_than_the_window else \
        3 * rig.settings.webhook_backoff_max_s
    rig.receiver.down()
    t0 = time.monotonic()
    ids, expected = submit_pages(rig, pages, JOBS, prefix=f"w{int(longer_than_the_window)}")
    rig.wait_terminal(ids, timeout_s=180)
    if longer_than_the_window:  # from the last job's end: each first round must give up
        down_s = max(down_s, time.monotonic() - t0 + retry_window_s(rig) + 4)
    time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
    rig.receiver.up()
    rig.wait_webhooks(ids, timeout_s=120)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], audit
    got = rig.receiver.by_job()
    assert all(c.at >= t0 + down_s for i in ids for c in got[i])
    if longer_than_the_window:  # each first round gave up; a later one got through
        for i in ids:
            errors = [d.error or "" for d in store.deliveries(rig.services.db, i)]
            assert any("giving up" in e for e in errors), errors
