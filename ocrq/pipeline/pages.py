"""A document's pages meet here: the last page read finishes the job with them all.

Every page runs as its own canvas (canvas.start); when a page's result is
ready (after reorder, or after its plug-in stages) :func:`collect` stores it in
one Redis hash per job, field = page index, and counts the fields in the same
MULTI. Exactly one page sees the count reach the total: it assembles the job's
document, and work.complete finishes the job once (a redelivered page sets its
field again, the count does not grow, and finish refuses a second end).
No Celery here.
"""

from __future__ import annotations

import json
from typing import Any

from ocrq.documents import assemble
from ocrq.pipeline.messages import JobContext
from ocrq.pipeline.state import Services

PREFIX = "ocrq:pages:"


def key(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def collect(state: Services, ctx: JobContext, doc: dict[str, Any]) -> dict[str, Any] | None:
    """Store page ``ctx.page``'s result; the whole document when it was the last one."""
    k = key(ctx.job_id)
    pipe = state.redis.pipeline(transaction=True)
    pipe.hset(k, str(ctx.page), json.dumps(doc, separators=(",", ":")))
    pipe.expire(k, state.settings.image_ttl_s)  # lives as long as the pages' blob
    pipe.hlen(k)
    done = int(pipe.execute()[-1])
    state.cache.update(ctx.job_id, pages_done=done, pages_total=ctx.pages)
    if done < ctx.pages:
        return None
    raw = state.redis.hgetall(k)
    docs = {int(i): json.loads(v) for i, v in raw.items()}  # type: ignore[union-attr]
    return assemble(ctx.name, [docs[i] for i in range(ctx.pages)])


def forget(state: Services, job_id: str) -> None:
    state.redis.delete(key(job_id))
