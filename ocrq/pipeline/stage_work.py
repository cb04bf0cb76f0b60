"""A plan's plug-in stages in the pipeline: one ``ocrq.stage`` task per stage, in turn.

The result document travels with the task (text, polygons and what earlier
stages added: small JSON, never pixels); the page is read again from its blob
key. The last stage finishes the job. No Celery here: tasks.py is the glue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ocrq.pipeline.messages import JobContext
from ocrq.pipeline.state import WorkerState
from ocrq.pipeline.work import complete, ended
from ocrq.plugin_stages import apply, branch, run_stage, step_of, with_branch


def run(state: WorkerState, ctx: JobContext, doc: dict[str, Any], index: int
        ) -> tuple[JobContext, dict[str, Any]] | None:
    """Stage ``ctx.stages[index]`` on the job's page; the context (with the stages
    a ``then`` branch added, routed now) and the document with its field.

    The job is finished after the last stage. None when the job had ended.
    """
    if ended(state, ctx.job_id):
        return None
    name = ctx.stages[index]
    state.cache.update(ctx.job_id, stage=name)
    plan = state.plans.resolve(ctx.bid, ctx.tid)
    step = step_of(state.plans, plan, doc, name)
    options = step.options if step else {}
    image = state.image(ctx.image_key, ctx.name)
    outcome = run_stage(state.engine, name, image, doc, options)
    doc = apply(doc, outcome, name)
    taken, extra = branch(state.plans, plan, name, options, outcome.output, ctx.stages)
    if taken is not None:
        doc = with_branch(doc, taken)
        ctx = replace(ctx, stages=(*ctx.stages, *(s.name for s in extra)),
                      queues={**ctx.queues, **{s.name: state.router.queue_for(s) for s in extra}})
    if index == len(ctx.stages) - 1:
        # The recognition progress the cache kept becomes the row's final count.
        flat = state.cache.get(ctx.job_id) or {}
        counts = {k: flat[k] for k in ("batches_done", "batches_total") if flat.get(k) is not None}
        if complete(state, ctx, doc, **counts) is None:
            return None  # other pages still running, or ended meanwhile (its webhook went)
    return ctx, doc
