"""kombu_fix: a Redis channel publishes through one client over its pool (issue 14's
intake profile: kombu built a ``redis.Redis`` per publish, a tenth of a submit's
CPU), and a new one when the pool is rebuilt (after a broker restart)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis
from kombu import Connection

from ocrq.pipeline import kombu_fix

URL = "redis://127.0.0.1:6379/14"  # the web tests' database (tests/conftest.py)


def test_one_client_per_channel_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    kombu_fix.install()
    made: list[int] = []
    original = redis.Redis.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    queue = f"kombu-client-{uuid.uuid4().hex[:8]}"
    conn = Connection(URL)
    try:
        channel = conn.default_channel
        producer = conn.Producer(channel)
        producer.publish({"n": 0}, routing_key=queue, declare=[conn.SimpleQueue(queue).queue])
        before = len(made)
        for n in range(1, 4):
            producer.publish({"n": n}, routing_key=queue)
        assert len(made) == before  # no client built per publish
        first = channel.__dict__["_ocrq_client"]
        channel._pool = None  # what a lost connection does; the next use rebuilds it
        producer.publish({"n": 4}, routing_key=queue)
        assert channel.__dict__["_ocrq_client"] is not first
        assert channel.__dict__["_ocrq_client"].connection_pool is channel.pool
        bodies = [json.loads(base64.b64decode(json.loads(m)["body"])) for m in
                  redis.Redis.from_url(URL).lrange(queue, 0, -1)]
        assert sorted(b["n"] for b in bodies) == [0, 1, 2, 3, 4]  # every one arrived
    finally:
        r = redis.Redis.from_url(URL)
        for key in r.scan_iter(match=f"*{queue}*"):
            r.delete(key)
        conn.release()
