"""Heartbeat records in Redis: one per worker node, one per worker process.

A node record says which queues a Celery worker consumes now (and whether it
is draining); a process record lists the model versions of that process with
their status and its memory. Every record has a TTL of ``heartbeat_ttl_s``:
a worker that dies simply stops refreshing and drops out of the snapshot.
Sorted-set indexes (member -> expiry time) let readers find records without
scanning the keyspace, which also holds image blobs and job status.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ocrq.cluster.snapshot import Snapshot, build

if TYPE_CHECKING:
    from redis import Redis

NODES = "ocrq:hb:nodes"  # zset: node name -> expiry
NODE_KEY = "ocrq:hb:node:{}"
PROCS = "ocrq:hb:procs"  # zset: "worker|pid" -> expiry
PROC_KEY = "ocrq:hb:proc:{}:{}"


def write_node(redis: Redis, record: dict[str, Any], ttl_s: int) -> None:
    name = record["name"]
    now = time.time()
    record = {**record, "ts": now}
    pipe = redis.pipeline()
    pipe.set(NODE_KEY.format(name), json.dumps(record), ex=ttl_s)
    pipe.zadd(NODES, {name: now + ttl_s})
    pipe.execute()


def write_proc(redis: Redis, record: dict[str, Any], ttl_s: int) -> None:
    worker, pid = record["worker"], int(record["pid"])
    now = time.time()
    record = {**record, "ts": now}
    pipe = redis.pipeline()
    pipe.set(PROC_KEY.format(worker, pid), json.dumps(record), ex=ttl_s)
    pipe.zadd(PROCS, {f"{worker}|{pid}": now + ttl_s})
    pipe.execute()


def remove_node(redis: Redis, name: str) -> None:
    pipe = redis.pipeline()
    pipe.delete(NODE_KEY.format(name))
    pipe.zrem(NODES, name)
    pipe.execute()


def remove_proc(redis: Redis, worker: str, pid: int) -> None:
    pipe = redis.pipeline()
    pipe.delete(PROC_KEY.format(worker, pid))
    pipe.zrem(PROCS, f"{worker}|{pid}")
    pipe.execute()


def read_snapshot(redis: Redis) -> Snapshot:
    """The live snapshot: every node and process whose heartbeat has not expired."""
    now = time.time()
    pipe = redis.pipeline()
    for index in (NODES, PROCS):
        pipe.zremrangebyscore(index, "-inf", now)
        pipe.zrangebyscore(index, now, "+inf")
    _, names, _, members = pipe.execute()
    node_keys = [NODE_KEY.format(_s(n)) for n in names]
    proc_keys = [PROC_KEY.format(*_s(m).rsplit("|", 1)) for m in members]
    nodes = [json.loads(raw) for raw in redis.mget(node_keys) if raw] if node_keys else []
    procs = [json.loads(raw) for raw in redis.mget(proc_keys) if raw] if proc_keys else []
    return build(nodes, procs)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
