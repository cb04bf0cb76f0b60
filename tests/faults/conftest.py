"""The fault suite's deployment: private Redis (AOF) and MariaDB, web, a GPU
worker (on CPU) and a CPU worker, a webhook receiver (ocrq.chaos.rig), and the
text the in-process engine reads from each test page (what ``ocrq run`` prints).

Run apart with ``pytest -m faults``; it also runs in the default suite. Tests
here break servers and processes: run them under ``flock /tmp/ocrq-it.lock``.
``OCRQ_FAULTS_GPU_KIND=cpu`` puts a prefork CPU worker on the gpu queue instead of
``workers.gpu`` (to tell a GPU worker's fault from the pipeline's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrq.chaos.rig import Rig
from ocrq.chaos.servers import MariaDBServer
from ocrq.engine import Engine
from ocrq.images import decode_image
from ocrq.settings import Settings
from tests.fixtures import encode, render_page

# Small receipts of 1-4 lines: a job takes a fraction of a second, so a fault lands
# on many jobs in flight at once.
PAGES = [["Invoice 4711", "Total 12.50"], ["Paper A4 500 sheets 4.20"],
         ["Blue pens box of 10 3.80", "Stapler heavy duty 4.50", "Thank you"],
         ["ACME Office Supplies Ltd.", "12 Harbour Road", "Date 25 November", "VAT 2.10"]]


@pytest.fixture(scope="session")
def pages(engine: Engine, model_root: Path) -> list[tuple[bytes, str]]:
    """(PNG bytes, the text the in-process engine reads from it) per test page."""
    settings = Settings(model_root=model_root)
    out = []
    for lines in PAGES:
        data = encode(render_page(lines, size=24, margin=16))
        out.append((data, engine.run(decode_image(data, "p.png", settings)).text()))
    return out


# One rig for the whole suite (a rig starts in ~15 s: five would add a minute).
# Whole-node kills: their unacknowledged messages come back after the visibility
# timeout. The deadline is the last resort for a job whose messages a flush dropped.
# A short time limit lets the sweeper re-drive a job kombu lost a message of (at the
# visibility timeout plus the time limit) well before its deadline.
RIG = {"visibility_timeout_s": 15, "job_deadline_s": 120, "task_time_limit_s": 60}


@pytest.fixture(scope="session")
def rig(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if not MariaDBServer.available():
        pytest.fail("mariadbd and mariadb-install-db are needed for the fault suite")
    with Rig(tmp_path_factory.mktemp("rig"), model_root=model_root,
             gpu_kind=os.environ.get("OCRQ_FAULTS_GPU_KIND", "gpu"), **RIG) as r:
        yield r

def submit_pages(rig: Rig, pages: list[tuple[bytes, str]], n: int,
                 prefix: str = "p") -> tuple[list[str], dict[str, str]]:
    """``n`` jobs cycling through the pages: (ids, id -> the expected text)."""
    ids, expected = [], {}
    for i in range(n):
        data, text = pages[i % len(pages)]
        job_id = rig.submit(data, f"{prefix}{i}.png")
        ids.append(job_id)
        expected[job_id] = text
    return ids, expected


def wait_started(rig: Rig, ids: list[str], timeout_s: float = 120) -> None:
    """Until one of the jobs has left the queue (a fault then lands mid-run)."""
    deadline = time.monotonic() + timeout_s
    while not any(rig.api(i)["status"] != "queued" for i in ids):
        assert time.monotonic() < deadline, "no job started"
        time.sleep(0.05)
