"""The intake's first task message, built once and pushed with one LPUSH (issue 14).

``Signature.apply_async`` walks Celery's router, ``amqp.as_task_v2``, kombu's
Producer (serializer registry, retry wrapper, connection pool) and the Redis
channel: about 0.5-0.7 ms of CPU for a message whose shape never changes. For
the one signature the intake sends for an image (the first stage task, with the
``ocrq.job_failed`` errback, see canvas.start) :class:`FastPublisher` writes the
same Celery protocol-2 message the Redis transport would have written: the
same headers, body and properties (tests/unit/test_intake_publish.py compares
the two field by field, and tests/integration/test_intake_fast_path.py has a
real worker run such a job), as one LPUSH queued on the caller's pipeline, so
it rides the same round trip as the job's status. A broker in another database
of the same Redis server (the default settings: 0 and 1) gets it the same way,
through a script that selects the broker's database for itself.

Everything else (a document's group of pages, a chain when rotate has its own
queue, a broker that is not Redis) still goes through Celery: :meth:`message`
returns None for it.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.canvas import Signature
from celery.utils.nodenames import anon_nodename
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from redis.retry import Retry

# Options canvas._sig sets; a signature carrying anything else is left to Celery.
_PLAIN = frozenset({"queue", "task_id", "link_error"})
_SCHEMES = ("redis://", "rediss://", "unix://")
# LPUSH into another database of the server: a script's SELECT is its own (Redis >=
# 2.8.12), the calling connection stays on its database. KEYS[1] the queue, ARGV[1] the
# broker's database, ARGV[2] the message.
_LPUSH_IN_DB = """
redis.call('SELECT', ARGV[1])
return redis.call('LPUSH', KEYS[1], ARGV[2])
"""


def broker_db(broker_url: str, store_url: str) -> int | None:
    """The broker's database number when the broker is a database of the store's own
    Redis server (same scheme, address, credentials and options); else None."""
    b, s = urlsplit(broker_url), urlsplit(store_url)
    if b.scheme not in ("redis", "rediss") or (b.scheme, b.netloc, b.query) != (
            s.scheme, s.netloc, s.query):
        return None
    path = b.path.strip("/")
    if not path:
        return 0
    return int(path) if path.isdigit() else None


class FastPublisher:
    """Protocol-2 messages for Celery's Redis transport, without the producer."""

    def __init__(self, app: Celery, broker_url: str, store_url: str) -> None:
        self.app = app
        self.enabled = broker_url.startswith(_SCHEMES)
        # Broker and status cache in one Redis database: the LPUSH rides the status's
        # pipeline; else it is one more command, on the broker's own client.
        self.shared = broker_url == store_url
        # Another database of the store's server: pushed by a script on the pipeline.
        self.db = None if self.shared else broker_db(broker_url, store_url)
        self._broker_url = broker_url
        self._broker: Redis | None = None
        self._origin = anon_nodename()

    def push(self, message: tuple[str, bytes], pipe: Pipeline) -> bool:
        """Queue the LPUSH on ``pipe`` when ``pipe``'s server holds the broker's
        database (True); else False: the caller sends it with :meth:`send` once
        ``pipe`` ran."""
        if self.shared:
            pipe.lpush(*message)
            return True
        if self.db is not None:
            # EVAL, not EVALSHA through a registered Script: a pipeline holding one
            # asks SCRIPT EXISTS first, a round trip per submit.
            pipe.eval(_LPUSH_IN_DB, 1, message[0], self.db, message[1])
            return True
        return False

    def send(self, message: tuple[str, bytes]) -> None:
        if self._broker is None:
            # Bounded like every Redis client here, and retried briefly: Celery's own
            # send rode out a broker blink with its publish retry policy.
            self._broker = Redis.from_url(
                self._broker_url, socket_timeout=10, socket_connect_timeout=5,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 5),
                retry_on_error=[RedisConnectionError, RedisTimeout])
        self._broker.lpush(*message)

    def message(self, sig: Signature, argsrepr: str) -> tuple[str, bytes] | None:
        """(queue, the LPUSH payload) for ``sig``, sent with ignore_result; None when
        ``sig`` is not a single plain task (Celery sends it then)."""
        opts = sig.options
        if (not self.enabled or type(sig) is not Signature or not _PLAIN.issuperset(opts)
                or not opts.get("queue") or not opts.get("task_id") or sig.subtask_type
                or sig.kwargs):
            return None
        limits = self._time_limits(sig.task)
        if limits is None:
            return None
        task_id, queue = str(opts["task_id"]), str(opts["queue"])
        errbacks = [dict(e) for e in opts.get("link_error") or ()] or None
        body = json.dumps([list(sig.args), {}, {
            "callbacks": None, "errbacks": errbacks, "chain": None, "chord": None}])
        envelope = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": self._headers(sig.task, task_id, argsrepr, limits),
            "properties": {
                "correlation_id": task_id, "reply_to": self.app.thread_oid,
                "argsrepr": argsrepr, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0, "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return queue, json.dumps(envelope).encode()

    def _time_limits(self, task: str) -> list[int | None] | None:
        """The message's [time_limit, soft_time_limit]: Celery's send puts in those of a
        task registered in this process (a web process registers none: [None, None]; a
        worker's own limits apply either way). None when such a task sets any other
        send option (Celery sends that one)."""
        registered = self.app._tasks.get(task)  # not app.tasks: that would finalize
        if registered is None:
            return [None, None]
        opts = {k: v for k, v in registered._get_exec_options().items() if v is not None}
        limits = [opts.pop("time_limit", None), opts.pop("soft_time_limit", None)]
        return limits if opts in ({}, {"serializer": "json"}) else None

    def _headers(self, task: str, task_id: str, argsrepr: str,
                 limits: list[int | None]) -> dict[str, Any]:
        """What Celery's ``amqp.as_task_v2`` puts in the headers of such a send."""
        return {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": limits, "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": self._origin,
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {},
        }


def publisher(app: Celery, store_url: str) -> FastPublisher:
    """The app's publisher (one per Celery app, made on first use)."""
    pub: FastPublisher | None = app.__dict__.get("_ocrq_publisher")
    if pub is None:
        pub = FastPublisher(app, str(app.conf.broker_url), store_url)
        app.__dict__["_ocrq_publisher"] = pub
    return pub
