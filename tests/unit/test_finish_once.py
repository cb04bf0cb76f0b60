"""A job ends once: a reorder (or last plug-in stage) that loses the race against a
cancel, the sweeper or a time limit finishes nothing and hands nothing on — its
caller sends no second webhook (the one that ended the job sent it)."""

from __future__ import annotations

from pathlib import Path

from ocrq.cli.serve import upgrade
from ocrq.pipeline import work
from ocrq.pipeline.messages import JobContext, Lines
from ocrq.pipeline.state import WorkerState
from ocrq.settings import Settings
from ocrq.storage import JobStatus
from ocrq.storage import jobs as store

QUEUES = {"detect": "cpu", "recognize": "cpu", "reorder": "cpu"}


def _state(tmp_path: Path, model_root: Path) -> WorkerState:
    url = f"sqlite:///{tmp_path / 'ocrq.sqlite3'}"
    upgrade(url)
    return WorkerState(Settings(database_url=url, redis_url="redis://127.0.0.1:6379/14",
                                model_root=model_root, threads=1))


def _job(state: WorkerState, job_id: str) -> JobContext:
    job, _ = store.create_job(state.db, id=job_id, bid="default", tid="ocr",
                              status=str(JobStatus.RUNNING), image_name="p.png", width=40,
                              height=20, batches_done=0, callback_url="http://127.0.0.1/h")
    state.cache.put(job_id, work.flat_from_row(job, None))  # the cache still says running
    return JobContext(job_id=job_id, bid="default", tid="ocr", image_key="-", name="p.png",
                      width=40, height=20, queues=QUEUES, batch_lines=32, callback=True,
                      rotation=0, lines=Lines([], [], []))


def test_a_reorder_that_loses_the_race_returns_nothing(tmp_path: Path,
                                                       model_root: Path) -> None:
    state = _state(tmp_path, model_root)
    ctx = _job(state, "race-ended-1")
    try:
        # Ended in the system of record (the sweeper, a cancel) after reorder's check.
        store.finish_job(state.db, ctx.job_id, JobStatus.FAILED,
                         error={"code": "deadline_exceeded", "message": "x"})
        assert work.reorder(state, [], ctx) is None
        assert store.get_job(state.db, ctx.job_id).status == str(JobStatus.FAILED)
        # The same reorder on a job nobody ended finishes it and hands the document on.
        ctx2 = _job(state, "race-ended-2")
        doc = work.reorder(state, [], ctx2)
        assert doc is not None and doc["lines"] == []
        assert store.get_job(state.db, ctx2.job_id).status == str(JobStatus.SUCCEEDED)
    finally:
        state.redis.delete(state.cache.key("race-ended-1"), state.cache.key("race-ended-2"))
