"""Worker processes SIGKILLed at random points (pool children and whole nodes,
started again as a supervisor would), and a poison page too large for a worker's
memory limit that kills its worker each time: every other job succeeds once with
the right text and its webhook; the poison job fails with worker_lost after
OCRQ_MAX_DELIVERIES starts."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.chaos.driver import Chaos, MemoryLimit
from ocrq.chaos.rig import Rig
from tests.faults.conftest import submit_pages, wait_started
from tests.fixtures import encode

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.timeout(600)]
JOBS = 24
HEADROOM = 150 * 2**20  # a worker process may grow this much over its size at rest


def poison_page() -> bytes:
    """A blank 7700 x 7700 page: a few kB as PNG, 178 MB of pixels decoded (just
    under OCRQ_MAX_IMAGE_PIXELS: intake takes it)."""
    return encode(np.full((7700, 7700, 3), 255, np.uint8))


def test_kills_cost_no_job_and_a_poison_page_fails_worker_lost(
        rig: Rig, pages: list[tuple[bytes, str]]) -> None:
    chaos = Chaos(rig, seed=14)
    oom = MemoryLimit(chaos, HEADROOM)
    oom.start()
    try:
        poison = rig.submit(poison_page(), "poison.png")
        ids, expected = submit_pages(rig, pages, JOBS)
        wait_started(rig, ids)
        driver, stop = chaos.start(n=5, every_s=(1.0, 3.0), workers_share=0.4)
        driver.join(timeout=120)
        stop.set()
        rows = rig.wait_terminal([poison, *ids], timeout_s=300)
    finally:
        oom.stop()
    rig.wait_webhooks([poison, *ids], timeout_s=60)
    audit = rig.audit([poison, *ids], expected, {poison: "worker_lost"})
    assert audit.problems == [], (audit, chaos.kills, oom.limits)
    assert rows[poison].error is not None
    assert f"lost {rig.settings.max_deliveries} times" in rows[poison].error["message"]
    # Each start of the poison's step was killed (a kill may also land on a process it
    # passed the page to, a GPU worker's tensor server say).
    assert len(oom.killed) >= rig.settings.max_deliveries, chaos.kills
    assert sum(k.what in ("child", "worker") for k in chaos.kills) == 5
