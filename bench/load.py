"""Intake load: submits/s and polls/s against the web process, no workers (jobs pile up).

    .venv/bin/python bench/load.py [--auth keys] [--server granian|gunicorn|waitress]
                                   [--procs 2] [--threads 8] [--raw] [--duration 10]
                                   [--connections 16]
    .venv/bin/python bench/load.py --jobs 100000     # memory of that many queued jobs

Starts its own deployment through ocrq.localcluster: a private redis-server on
a free port (broker in db 0, blobs and status cache in db 1, so ``used_memory``
counts only this run), a throw-away MariaDB database (root on 127.0.0.1, or
OCRQ_BENCH_MYSQL_URL), the web intake (``ocrq serve``'s start_web: granian by
default, processes x threads) and, with ``--consume N``, a CPU worker with N
processes.

The load comes from wrk (Debian: ``apt-get install wrk``), a C generator with a
Lua script, run in its own process: POST /v1/jobs with a 50 KB receipt JPEG
(multipart, or with ``--raw`` the JPEG itself as the body) for --duration s, then
GET /v1/jobs/<id> cycling over queued jobs.
Its own cost is printed: requests per CPU second of wrk (its rusage) is the rate
one core of generator could sustain at that mix (its ceiling), to compare with
the rate it reached. The web's, Redis's and MariaDB's CPU milliseconds per request
are printed too: unlike the rates they hold still when others load the machine
(MariaDB's counts whatever else the shared server did meanwhile). So is how busy the
whole machine was (cores, from /proc/stat) and how much of that was other programs'
(the machine less wrk, the web, Redis and MariaDB): a rate measured while others
held most of the cores says little about this code.
Memory: Redis ``used_memory`` delta over the jobs created, and MEMORY USAGE of
one job's keys and of the broker queue.
Prints one table; run it twice and compare ratios (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  first: checks that ocrq is installed

# isort: split
import cv2
import numpy as np
import psutil
import pymysql
from redis import Redis
from sqlalchemy.engine import make_url

from ocrq.cli.serve import SERVERS, start_web, upgrade
from ocrq.localcluster import LocalCluster, WorkerSpec, free_port, wait_redis
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage.keys import create_key
from web import create_app

from _wrk import (  # isort: skip  (bench/ itself)
    BOUNDARY, Run, cpu_seconds, poll_lua, submit_lua, wrk)

MYSQL_URL = os.environ.get("OCRQ_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")


def receipt_jpeg(target: int = 50 * 1024) -> bytes:
    """A receipt-like page (text lines on white) as a JPEG of at most ``target`` bytes."""
    rng = np.random.default_rng(7)
    page = np.full((1200, 576), 250, np.uint8)
    for row in range(36):
        words = " ".join(str(w) for w in rng.integers(10, 99999, size=3))
        cv2.putText(page, f"ITEM {row:02d} {words}", (24, 40 + row * 32),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, 20, 1, cv2.LINE_AA)
    bgr = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
    best = b""
    for q in range(20, 100, 2):  # the highest quality still under the target
        data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
        if len(data) > target and best:
            break
        best = data
    return best


def multipart(data: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"receipt.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def job_ids(store: Redis, n: int) -> list[str]:
    """Up to ``n`` ids of queued jobs (their status-cache keys)."""
    ids = []
    for key in store.scan_iter(match="ocrq:job:*", count=1000):
        k = key.decode()
        if k.count(":") == 2:  # not ocrq:job:<id>:tasks
            ids.append(k.rsplit(":", 1)[1])
            if len(ids) >= n:
                break
    return ids


def memory(broker: Redis, store: Redis) -> dict[str, int]:
    """used_memory of the private server; queued messages and their bytes in the broker."""
    queued = queue_bytes = 0
    for key in broker.scan_iter(count=1000):
        if broker.type(key) == b"list":
            queued += int(broker.llen(key))  # type: ignore[arg-type]
            queue_bytes += int(broker.memory_usage(key, samples=0) or 0)
    return {"used": int(broker.info("memory")["used_memory"]), "queued": queued,
            "queue_bytes": queue_bytes, "store_keys": int(store.dbsize())}  # type: ignore[arg-type]


def key_bytes(store: Redis, job_id: str) -> dict[str, int]:
    keys = {"image blob": f"ocrq:img:{job_id}", "status hash": f"ocrq:job:{job_id}",
            "task ids": f"ocrq:job:{job_id}:tasks"}
    return {k: int(store.memory_usage(v, samples=0) or 0) for k, v in keys.items()}


class Bench:
    """The deployment of one run: private Redis, throw-away MariaDB, web (+ workers)."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.db_name = f"ocrq_bench_{secrets.token_hex(4)}"
        self.mysql = make_url(MYSQL_URL)
        self.cluster: LocalCluster | None = None

    def _mysql(self) -> pymysql.Connection:  # type: ignore[type-arg]
        u = self.mysql
        return pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306,
                               user=u.username or "root", password=u.password or "")

    def start(self) -> tuple[Settings, str]:
        """Everything up; (settings, base URL)."""
        redis_port, web_port = free_port(), free_port()
        redis = f"redis://127.0.0.1:{redis_port}"
        with self._mysql() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db_name} CHARACTER SET utf8mb4")
        s = Settings.from_env(
            broker_url=f"{redis}/0", redis_url=f"{redis}/1", auth=self.args.auth,
            database_url=f"{MYSQL_URL}/{self.db_name}", model_root=self.tmp / "models",
            allow_default_secret=True)
        upgrade(s.database_url)
        self.cluster = LocalCluster(s, log_dir=self.tmp)
        redis_proc = self.cluster.start_process("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.tmp), "--maxmemory-policy", "noeviction",
            # A bound, so that a --jobs run on a shared machine fails its submits (counted
            # as errors) instead of taking the machine's memory.
            "--maxmemory", f"{self.args.redis_max_gb}gb"], service=True)
        wait_redis(s.broker_url)
        a = self.args
        web = start_web(self.cluster, "127.0.0.1", web_port, server=a.server,
                        processes=a.procs, threads=a.threads)
        a.web_pid, a.web_port, a.redis_pid = web.pid, web_port, redis_proc.pid
        if a.consume:
            ModelRepository(s.model_root).ensure_defaults()
            queues = ",".join([s.queue_gpu, s.queue_cpu])
            self.cluster.start_worker(WorkerSpec("cpu", "loadcpu", queues, a.consume))
        self.cluster.wait_ready()
        return s, f"http://127.0.0.1:{web_port}"

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        with self._mysql() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {self.db_name}")


def mariadb_pid(port: int) -> int | None:
    """The pid of the MariaDB server listening on ``port`` here, if any (its CPU is
    counted too: a shared server, so other clients' queries during a run count too)."""
    for p in psutil.process_iter(["name"]):
        if p.info["name"] not in ("mariadbd", "mysqld"):
            continue
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in p.net_connections("tcp")):
                return int(p.pid)
        except psutil.Error:
            continue
    return None


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent not idle, since boot."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def others(r: Run, db_cpu_s: float, busy_s: float) -> float:
    """CPU seconds of a run's phase used by programs other than the bench's own."""
    return max(0.0, busy_s - r.wrk_cpu_s - r.web_cpu_s - r.redis_cpu_s - db_cpu_s)


def web_split(web_pid: int, port: int) -> dict[int, tuple[int, float]]:
    """Per web process: (wrk's connections on it, CPU seconds so far). Spread unevenly (granian
    5 / 11; gunicorn gthread 16 on one): a process holds about one core (its GIL)."""
    out = {}
    for p in ((root := psutil.Process(web_pid)), *root.children(recursive=True)):  # waitress: root
        with contextlib.suppress(psutil.Error):
            out[p.pid] = (sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                              for c in p.net_connections("tcp")), sum(p.cpu_times()[:2]))
    return out


def submit_body(image: bytes, raw: bool) -> tuple[bytes, str]:
    """(body, its Content-Type) of one submit: multipart, or the image itself."""
    if raw:
        return image, "image/jpeg"
    return multipart(image), f"multipart/form-data; boundary={BOUNDARY}"


def measure(args: argparse.Namespace, s: Settings, url: str, tmp: Path) -> None:
    token = None
    if args.auth == "keys":
        token = create_key(Database(s.database_url), "default", "bench/load.py")[1]
    image = receipt_jpeg()
    body = tmp / "submit.body"
    data, content_type = submit_body(image, args.raw)
    body.write_bytes(data)
    submit = submit_lua(body, token) + f'wrk.headers["Content-Type"] = "{content_type}"\n'
    broker, store = Redis.from_url(s.broker_url), Redis.from_url(s.redis_url)
    db_pid, db_cpu = mariadb_pid(make_url(MYSQL_URL).port or 3306), {}
    busy: dict[str, float] = {}
    split: dict[str, str] = {}

    def run(name: str, path: str, lua: str, **kw: Any) -> Run:
        c0, m0 = (cpu_seconds(db_pid) if db_pid else 0.0), machine_busy_s()
        w0, mid = web_split(args.web_pid, args.web_port), {}
        threading.Timer(1.0, lambda: mid.update(web_split(args.web_pid, args.web_port))).start()
        r = wrk(name, f"{url}{path}", lua, tmp, args, **kw)
        db_cpu[name] = (cpu_seconds(db_pid) - c0) if db_pid else 0.0
        busy[name], w1 = machine_busy_s() - m0, web_split(args.web_pid, args.web_port)
        split[name] = " / ".join(f"{mid[p][0]}: {(w1[p][1] - w0[p][1]) / r.seconds:.2f}"
                                 for p in w1 if p in w0 and p in mid and mid[p][0])
        return r

    runs = [run("healthz", "/healthz", "")]
    m0 = memory(broker, store)
    if args.jobs:
        queue = s.queue_gpu  # where a job's first task waits (no worker: the static queue)
        runs.append(run("submit (fill)", "/v1/jobs", submit,
                        until=lambda: int(broker.llen(queue)) >= args.jobs))  # type: ignore[arg-type]
    else:
        runs.append(run("submit", "/v1/jobs", submit))
    m1 = memory(broker, store)
    ids = job_ids(store, 2000)
    if not ids:
        raise SystemExit(f"no job was queued; web log:\n{(tmp / 'web.log').read_text()[-3000:]}")
    runs.append(run("poll", "/v1/jobs/", poll_lua(ids, token)))
    report(args, runs, db_cpu, m0, m1, key_bytes(store, ids[0]), len(image))
    print(f"machine, busy cores during each phase (of {psutil.cpu_count()}) / of them other "
          "programs' (web processes, wrk's connections on each: the cores it used): "
          + "; ".join(f"{r.name} {busy[r.name] / r.seconds:.2f} / "
                      f"{others(r, db_cpu[r.name], busy[r.name]) / r.seconds:.2f} "
                      f"({split[r.name]})" for r in runs if r.seconds))
    if any(r.errors for r in runs):  # what the web said about them
        lines = (tmp / "web.log").read_text(errors="replace").splitlines()
        print("web log, its warnings and errors:",
              *[x[:300] for x in lines if "WARNING" in x or "ERROR" in x][-5:], sep="\n  ")
    if args.inprocess:
        inprocess(args, s, data, content_type, token, ids[0])


def inprocess(args: argparse.Namespace, s: Settings, body: bytes, content_type: str,
              token: str | None, job_id: str) -> None:
    """CPU ms per submit and per poll in this process (Flask's test client, one thread,
    best of 5 rounds): the web's own work per request, without the server and with
    little of the noise of a shared machine; compare it across trees or changes."""
    client = create_app(s.with_(auth=args.auth)).test_client()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    calls = {"submit": lambda: client.post("/v1/jobs", data=body, headers=headers),
             "poll": lambda: client.get(f"/v1/jobs/{job_id}", headers=headers)}
    for name, call in calls.items():
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(args.inprocess):
                assert call().status_code in (200, 202)
            best = min(best, (time.process_time() - t) / args.inprocess * 1000)
        print(f"in-process {name}: {best:.3f} ms CPU (best of 5 x {args.inprocess})")


def report(args: argparse.Namespace, runs: list[Run], db_cpu: dict[str, float],
           m0: dict[str, int], m1: dict[str, int], keys: dict[str, int],
           image_bytes: int) -> None:
    print(f"\nweb: {args.server}, {args.procs} process(es) x {args.threads} threads; "
          f"auth={args.auth}; consuming worker processes: {args.consume}; "
          f"wrk -t{args.wrk_threads} -c{args.connections}; receipt {image_bytes} bytes "
          f"({'raw image/jpeg' if args.raw else 'multipart'}); "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'phase':14} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'web cpu ms/req':>14} {'redis cpu ms/req':>16} "
          f"{'db cpu ms/req':>13} {'wrk ceiling/s':>13}")
    for r in runs:
        print(f"{r.name:14} {r.requests:>9} {r.rate:>8.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
              f"{r.errors:>6} {r.per_request_ms(r.web_cpu_s):>14.3f} "
              f"{r.per_request_ms(r.redis_cpu_s):>16.3f} "
              f"{r.per_request_ms(db_cpu.get(r.name, 0.0)):>13.3f} {r.ceiling:>13.0f}")
    jobs = m1["queued"] - m0["queued"]
    if jobs > 0:
        per_job = (m1["used"] - m0["used"]) / jobs
        print(f"\nqueued jobs: {m1['queued']} (+{jobs}); Redis used_memory "
              f"{m0['used'] / 2**20:.1f} -> {m1['used'] / 2**20:.1f} MiB: "
              f"{per_job:.0f} bytes per queued job; broker queue {m1['queue_bytes']} bytes "
              f"= {m1['queue_bytes'] / max(1, m1['queued']):.0f} bytes per message")
        print("one job's keys (MEMORY USAGE): "
              + ", ".join(f"{k} {v} B" for k, v in keys.items()))
        print(f"100,000 queued jobs at this rate: {per_job * 1e5 / 2**30:.2f} GiB of Redis")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--server", choices=SERVERS, default="granian")
    ap.add_argument("--procs", type=int, default=1, help="web processes (not waitress)")
    ap.add_argument("--threads", type=int, default=8, help="threads per web process")
    ap.add_argument("--auth", choices=("none", "keys"), default="none")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--raw", action="store_true",
                    help="submit the JPEG as the body (Content-Type: image/jpeg), not multipart")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=0,
                    help="instead of --duration for submits: queue this many jobs")
    ap.add_argument("--consume", type=int, default=0, help="CPU worker processes consuming")
    ap.add_argument("--inprocess", type=int, default=100,
                    help="then time N submits and polls in this process (0: skip)")
    ap.add_argument("--redis-max-gb", type=int, default=8, help="the private Redis' maxmemory")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="ocrq-load-") as t:
        bench = Bench(args, Path(t))
        try:
            s, url = bench.start()
            measure(args, s, url, Path(t))
        finally:
            bench.stop()


if __name__ == "__main__":
    sys.exit(main())
