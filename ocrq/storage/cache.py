"""Job status in Redis, so polling never touches the database while a job is hot.

One hash per job, every field JSON-encoded. Updates go through Lua scripts that
refuse to change a job already in a terminal state: a cancel is never undone by
a worker that finishes late, and a late failure never overwrites a success.
"""

from __future__ import annotations

import json
import re
from typing import Any

from redis import Redis
from redis.client import Pipeline

# KEYS[1]=hash; ARGV[1]=ttl, ARGV[2]=only_if_exists (0/1), ARGV[3..]=field,value pairs.
# Returns 1 updated, 0 refused (terminal), -1 missing.
_UPDATE = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  if ARGV[2] == '1' then return -1 end
else
  for _, t in ipairs({'"succeeded"', '"failed"', '"cancelled"'}) do if st == t then return 0 end end
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


# HINCRBY on a JSON-encoded integer works: "3" is valid JSON and a valid int.
_INCR_DONE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
"""


_PLAIN_FIELD = re.compile(rb"[A-Za-z0-9_.:-]+\Z")  # a JSON string as it is, unescaped


def _decoded(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """The hash's fields, each a JSON text, as one dict: parsed as one JSON object (one
    ``json.loads`` instead of one per field: most of a poll's own CPU, issue 14).
    Field names are this module's callers' identifiers; any that would need escaping
    sends the hash the slow way."""
    if not all(map(_PLAIN_FIELD.match, raw)):
        return {k.decode(): json.loads(v) for k, v in raw.items()}
    return dict(json.loads(b"{%b}" % b",".join(b'"%b":%b' % kv for kv in raw.items())))


class StatusCache:
    prefix = "ocrq:job:"

    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._update = redis.register_script(_UPDATE)
        self._incr = redis.register_script(_INCR_DONE)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}"

    def put(self, job_id: str, doc: dict[str, Any], pipe: Pipeline | None = None) -> None:
        """Write (or refresh) the whole cached document; with ``pipe``, only queued on
        it (the caller executes it, in one round trip with its other commands)."""
        p = pipe if pipe is not None else self.redis.pipeline()
        p.hset(self.key(job_id), mapping={k: json.dumps(v) for k, v in doc.items()})
        p.expire(self.key(job_id), self.ttl_s)
        if pipe is None:
            p.execute()

    def update(self, job_id: str, **fields: Any) -> int:
        """1 updated, 0 refused because the job is terminal, -1 not cached."""
        argv: list[Any] = [self.ttl_s, 1]
        for k, v in fields.items():
            argv += [k, json.dumps(v)]
        return int(self._update(keys=[self.key(job_id)], args=argv))

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.key(job_id))  # type: ignore[assignment]
        if not raw:
            return None
        return _decoded(raw)

    def status(self, job_id: str) -> str | None:
        raw = self.redis.hget(self.key(job_id), "status")
        return None if raw is None else json.loads(raw)  # type: ignore[arg-type]

    def waiting(self, job_id: str) -> bool:
        """Whether a step of the job was given back and waits for its backend."""
        raw = self.redis.hget(self.key(job_id), "waiting")
        return raw is not None and bool(json.loads(raw))  # type: ignore[arg-type]

    def incr_done(self, job_id: str) -> int:
        """Count one finished batch; -1 when the job is not cached (expired, evicted).

        HINCRBY on a missing key would create a hash holding only the counter
        (no id, no TTL) that polling would then serve, so it runs only on an
        existing entry (one Lua call: no race with the expiry).
        """
        return int(self._incr(keys=[self.key(job_id)]))

    @staticmethod
    def delivery_key(task_id: str) -> str:
        return f"ocrq:delivery:{task_id}"

    def delivery(self, task_id: str, ttl_s: int) -> int:
        """Count one start of a task's message; the count survives redeliveries.

        ``ttl_s`` (renewed on every start) must outlast the longest gap between two
        starts of one message (a visibility timeout and a wait in the queue); the
        key is also deleted when its task is done (:meth:`forget_deliveries`).
        """
        k = self.delivery_key(task_id)
        pipe = self.redis.pipeline()
        pipe.incr(k)
        pipe.expire(k, ttl_s)
        return int(pipe.execute()[0])

    def forget_deliveries(self, task_ids: list[str]) -> None:
        """Drop the start counters of tasks that are done: nothing redelivers them."""
        if task_ids:
            self.redis.delete(*(self.delivery_key(t) for t in task_ids))

    # Celery task ids of a job, so a cancel can revoke what has not run yet.
    def add_tasks(self, job_id: str, task_ids: list[str], pipe: Pipeline | None = None
                  ) -> None:
        """Remember the task ids; with ``pipe``, only queued on it (see :meth:`put`)."""
        if task_ids:
            k = f"{self.key(job_id)}:tasks"
            p = pipe if pipe is not None else self.redis.pipeline()
            p.sadd(k, *task_ids)
            p.expire(k, self.ttl_s)
            if pipe is None:
                p.execute()

    def tasks(self, job_id: str) -> list[str]:
        return sorted(m.decode() for m in self.redis.smembers(f"{self.key(job_id)}:tasks"))  # type: ignore[union-attr]

    # Webhooks that gave up (their receiver down past the retry window), by when: the
    # sweeper sends them again later (OCRQ_WEBHOOK_REDRIVE_AFTER_S, OCRQ_WEBHOOK_ROUNDS).
    gave_up_key = "ocrq:webhooks:gave-up"

    def webhook_gave_up(self, job_id: str, at: float) -> None:
        self.redis.zadd(self.gave_up_key, {job_id: at})

    def webhooks_gave_up_before(self, at: float, limit: int) -> list[str]:
        raw = self.redis.zrangebyscore(self.gave_up_key, 0, at, start=0, num=limit)
        return [m.decode() for m in raw]  # type: ignore[union-attr]

    def webhook_round(self, job_id: str, ttl_s: int) -> int:
        """Take the job off the gave-up set; the number of its next round (2, 3...)."""
        k = f"ocrq:webhooks:round:{job_id}"
        pipe = self.redis.pipeline()
        pipe.zrem(self.gave_up_key, job_id)
        pipe.incr(k)
        pipe.expire(k, ttl_s)
        return int(pipe.execute()[1]) + 1
