"""A plan's plug-in stages in the pipeline: one ``ocrq.stage`` task per stage, in turn.

The result document travels with the task (text, polygons and what earlier
stages added: small JSON, never pixels); the page is read again from its blob
key. The last stage finishes the job. No Celery here: tasks.py is the glue.
"""

from __future__ import annotations

from typing import Any

from ocrq.pipeline.messages import JobContext
from ocrq.pipeline.state import WorkerState
from ocrq.pipeline.work import ended, finish
from ocrq.plugin_stages import apply, run_stage
from ocrq.storage import JobStatus


def run(state: WorkerState, ctx: JobContext, doc: dict[str, Any], index: int
        ) -> dict[str, Any] | None:
    """Stage ``ctx.stages[index]`` on the job's page; the document with its field.

    The job is finished after the last stage. None when the job had ended.
    """
    if ended(state, ctx.job_id):
        return None
    name = ctx.stages[index]
    state.cache.update(ctx.job_id, stage=name)
    step = state.plans.resolve(ctx.bid, ctx.tid).step(name)
    image = state.image(ctx.image_key, ctx.name)
    doc = apply(doc, run_stage(state.engine, name, image, doc, step.options if step else {}),
                name)
    if index == len(ctx.stages) - 1:
        # The recognition progress the cache kept becomes the row's final count.
        flat = state.cache.get(ctx.job_id) or {}
        counts = {k: flat[k] for k in ("batches_done", "batches_total") if flat.get(k) is not None}
        if not finish(state, ctx.job_id, JobStatus.SUCCEEDED, document=doc, **counts):
            return None  # ended meanwhile: whoever ended it sent the webhook
    return doc
