"""A document whose intake died before enqueueing it: the sweeper re-drives it as
a document (one chain per page, found again from the stored blob), not as an image
(real SQLite, Redis and broker queue, as tests/unit/test_sweeper_rules.py)."""

from __future__ import annotations

from celery import Celery

from ocrq.pipeline import sweeper
from ocrq.pipeline.state import Services
from ocrq.storage import JobStatus
from tests.doc_fixtures import pdf
from tests.fixtures import render_page
from tests.unit.test_sweeper_rules import REDRIVE, add_job, app, messages, services  # noqa: F401


def test_an_abandoned_document_is_redriven_page_by_page(services: Services,  # noqa: F811
                                                       app: Celery) -> None:  # noqa: F811
    s = services.settings
    job_id = add_job(services, JobStatus.QUEUED, REDRIVE + 5)
    pages = [render_page([f"Page {n}"]) for n in (1, 2, 3)]
    services.blobs.put(job_id, pdf(pages))
    out = sweeper.sweep(services, app)
    assert out.redriven == [job_id]
    sent = messages(services, s.queue_gpu) + messages(services, s.queue_cpu)
    firsts = [m["args"][0] for m in sent]
    assert len(firsts) == 3, sent
    key = services.blobs.key_for(job_id)
    assert sorted((c["page"], c["pages"], c["image_key"]) for c in firsts) == [
        (i, 3, f"{key}#page={i}") for i in range(3)]
    assert all(c["page_sizes"] == [] for c in firsts)  # intake's list stays at intake
