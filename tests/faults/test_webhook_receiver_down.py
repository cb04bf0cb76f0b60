"""The webhook receiver down for three times the longest retry interval, then
back: every job's final webhook is received at least once, each with its stable
event id (a duplicate is recognisable by it), signed."""

from __future__ import annotations

import time

import pytest

from ocrq.chaos.rig import Rig
from tests.faults.conftest import submit_pages

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(400)]
JOBS = 12


def test_webhooks_survive_the_receiver_going_away(rig: Rig, pages: list[tuple[bytes, str]]
                                                   ) -> None:
    rig.receiver.down()
    down_s = 3 * rig.settings.webhook_backoff_max_s
    t0 = time.monotonic()
    ids, expected = submit_pages(rig, pages, JOBS)
    rig.wait_terminal(ids, timeout_s=180)
    time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
    rig.receiver.up()
    rig.wait_webhooks(ids, timeout_s=120)
    audit = rig.audit(ids, expected)
    assert audit.problems == [], audit
    assert all(c.at >= t0 + down_s for calls in rig.receiver.by_job().values() for c in calls)
