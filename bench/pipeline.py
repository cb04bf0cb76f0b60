"""The full service vs in-process Engine.run on the same images and cores.

    python bench/pipeline.py [DATA_DIR] [--limit N] [--concurrency 2] [--clients 4]

DATA_DIR defaults to ../shared/eval/dev. Steps:
1. in-process: Engine.run on each page in turn (models loaded and warmed first;
   ONNX Runtime threads = --inproc-threads, 0 = all cores, the `ocrq run` default).
2. the service: migrated SQLite file (or --database-url), a worker process
   (`python -m workers.cpu -c --concurrency`, each child with --worker-threads
   ONNX threads) and a waitress web process, started by ocrq.localcluster as
   `ocrq serve` starts them, Redis broker on its own db numbers.
3. throughput: --clients threads each submit a page over HTTP (multipart), poll
   GET /v1/jobs/<id> every 20 ms until done, then take the next page. In-process
   and service passes alternate (--repeat) so background load hits both alike.
4. latency: the worker is restarted as one process with the in-process
   engine's threads; page by page, Engine.run then the service; service
   latency = request sent -> the job's finished_at (stamped by the worker, so
   the 50 ms polling neither inflates it nor loads the cores); added latency =
   the paired difference.
5. bytes on the broker: Redis MONITOR on the broker db, summing the payload of
   every LPUSH (the kombu Redis transport publishes with LPUSH); chord-join
   traffic to the result backend is reported separately.
Checks that every page's text from the service equals Engine.run's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import data_parser  # first: checks that ocrq is installed

# isort: split
import requests
from redis import Redis

from ocrq.cli.serve import upgrade
from ocrq.document import PageResult
from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.images import decode_image
from ocrq.localcluster import LocalCluster, WorkerSpec, free_port
from ocrq.settings import Settings


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__, limit_help="only the first N receipts")
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 1,
                    help="worker processes")
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="ONNX threads per worker process")
    ap.add_argument("--inproc-threads", type=int, default=0, help="0 = all cores")
    ap.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    ap.add_argument("--repeat", type=int, default=2, help="alternating throughput passes")
    ap.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    ap.add_argument("--broker-db", type=int, default=4)
    ap.add_argument("--store-db", type=int, default=5)
    return ap.parse_args()


class BrokerMonitor:
    """Sums payload bytes of LPUSH on the broker db and chord-join writes on the store db."""

    def __init__(self, url: str, broker_db: int, store_db: int) -> None:
        self.redis = Redis.from_url(url)
        self.broker_db, self.store_db = broker_db, store_db
        self.reset()
        threading.Thread(target=self._run, daemon=True).start()
        time.sleep(0.3)

    def reset(self) -> None:
        self.broker_bytes = self.messages = self.max_message = self.backend_bytes = 0

    def _run(self) -> None:
        with self.redis.monitor() as m:
            for c in m.listen():
                cmd: str = c.get("command", "")
                db = int(c.get("db", -1))
                if db == self.broker_db and cmd.startswith("LPUSH "):
                    n = len(cmd.split(" ", 2)[2].encode())
                    self.broker_bytes += n
                    self.messages += 1
                    self.max_message = max(self.max_message, n)
                elif db == self.store_db:
                    op, key, *rest = cmd.split(" ", 2) + [""]
                    if op in ("SET", "SETEX", "RPUSH") and key.startswith("celery-task"):
                        self.backend_bytes += len(rest[0].encode())


def start_service(args: argparse.Namespace, tmp: Path) -> tuple[LocalCluster, str]:
    """Migrated database, flushed Redis dbs and the web process; returns (cluster, base URL)."""
    settings = Settings.from_env(
        database_url=args.database_url or f"sqlite:///{tmp / 'ocrq.sqlite3'}",
        broker_url=f"redis://127.0.0.1:6379/{args.broker_db}",
        redis_url=f"redis://127.0.0.1:6379/{args.store_db}",
        # Its worker consumes the webhooks queue, which refuses the default key.
        webhook_secret=secrets.token_hex(16))
    upgrade(settings.database_url)
    for url in (settings.broker_url, settings.redis_url):
        Redis.from_url(url).flushdb()
    cluster = LocalCluster(settings, log_dir=tmp)
    return cluster, cluster.start_web(port=free_port()).url


def start_worker(cluster: LocalCluster, concurrency: int, threads: int) -> str:
    """A worker on every queue with ``concurrency`` processes, ready; returns its name."""
    spec = WorkerSpec("cpu", f"bench-{os.getpid()}-{concurrency}", "gpu,cpu,webhooks",
                      concurrency, loglevel="WARNING")
    cluster.start_worker(spec, cluster.settings.with_(threads=threads))
    cluster.wait_ready()  # the web process too
    return spec.node


def run_job(base: str, name: str, data: bytes, poll_s: float) -> tuple[float, dict[str, Any]]:
    """(seconds from sending the request to the job's finished_at, final document)."""
    sent = time.time()
    r = requests.post(f"{base}/v1/jobs", files={"image": (name, data)}, timeout=60)
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        doc = requests.get(f"{base}/v1/jobs/{job_id}", timeout=60).json()
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            # finished_at is stamped by the worker (same machine, same clock), so the
            # polling interval does not inflate the latency.
            done = datetime.fromisoformat(doc["finished_at"].replace("Z", "+00:00"))
            return done.timestamp() - sent, doc
        time.sleep(poll_s)


@dataclass
class Runs:
    """What the passes measured (rates in pages/s, latencies in ms)."""

    inproc_rates: list[float] = field(default_factory=list)
    service_rates: list[float] = field(default_factory=list)
    inproc_text: dict[str, str] = field(default_factory=dict)
    results: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    broker: tuple[int, int, int, int] = (0, 0, 0, 0)  # bytes, messages, largest, backend
    added: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)


InProc = Callable[[str, bytes], tuple[float, str]]


def throughput(args: argparse.Namespace, base: str, pages: list[tuple[str, bytes]],
               inproc: InProc, runs: Runs) -> None:
    """The two paths take turns pass by pass, so drifting background load hits both alike."""
    mon = BrokerMonitor("redis://127.0.0.1:6379/0", args.broker_db, args.store_db)
    with ThreadPoolExecutor(args.concurrency) as ex:  # warm every worker process
        list(ex.map(lambda p: run_job(base, *p, 0.05), pages[: args.concurrency] * 2))
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for name, data in pages:
            runs.inproc_text[name] = inproc(name, data)[1]
        runs.inproc_rates.append(len(pages) / (time.perf_counter() - t0))
        mon.reset()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as ex:
            runs.results = list(ex.map(lambda p: run_job(base, *p, 0.02), pages))
        runs.service_rates.append(len(pages) / (time.perf_counter() - t0))
        runs.broker = (mon.broker_bytes, mon.messages, mon.max_message, mon.backend_bytes)


def latency(base: str, pages: list[tuple[str, bytes]], inproc: InProc, runs: Runs) -> None:
    """Page by page, in-process then service (one worker process): paired differences."""
    run_job(base, *pages[0], 0.05)
    for name, data in pages:
        t_in = inproc(name, data)[0]
        t_svc, doc = run_job(base, name, data, 0.05)
        runs.added.append((t_svc - t_in) * 1000)
        # One worker process runs the stages one after the other, so the latency
        # minus the stage times the worker reports is what the pipeline adds.
        runs.overhead.append(t_svc * 1000 - sum(doc["result"]["timings_ms"].values()))


def main() -> int:
    args = parse_args()
    samples = load_manifest(args.data, limit=args.limit)
    pages = [(s.path.name, s.path.read_bytes()) for s in samples]
    settings = Settings.from_env(threads=args.inproc_threads)
    engine = Engine.from_settings(settings)
    engine.preload()
    engine.run(decode_image(pages[0][1], pages[0][0]), pages[0][0])  # warm-up

    def inproc(name: str, data: bytes) -> tuple[float, str]:
        t0 = time.perf_counter()  # decode counted: the service decodes too
        text = engine.run(decode_image(data, name, settings), name).text()
        return time.perf_counter() - t0, text

    runs = Runs()
    cluster, base = start_service(args, Path(tempfile.mkdtemp(prefix="ocrq-bench-")))
    try:
        worker = start_worker(cluster, args.concurrency, args.worker_threads)
        throughput(args, base, pages, inproc, runs)
        # Latency: one worker process configured like the in-process engine.
        cluster.stop([worker])
        start_worker(cluster, 1, args.inproc_threads)
        latency(base, pages, inproc, runs)
    finally:
        cluster.stop()
    return report(args, pages, runs)


def report(args: argparse.Namespace, pages: list[tuple[str, bytes]], runs: Runs) -> int:
    n = len(pages)
    same = sum(1 for (name, _), (_, doc) in zip(pages, runs.results, strict=True)
               if doc["status"] == "succeeded"
               and PageResult.from_dict(doc["result"]).text() == runs.inproc_text[name])
    inproc_rate = statistics.mean(runs.inproc_rates)
    service_rate = statistics.mean(runs.service_rates)
    added, broker = runs.added, runs.broker
    print(f"\n{n} pages from {args.data}, {args.repeat} alternating passes; worker processes "
          f"{args.concurrency} x {args.worker_threads} ONNX threads; in-process threads "
          f"{args.inproc_threads or 'all'}; {args.clients} HTTP clients; {os.cpu_count()} cores\n")
    print("| path | pages/s (mean of passes) | passes | ratio vs in-process |")
    print("|---|---|---|---|")
    print(f"| in-process Engine.run | {inproc_rate:.2f} | "
          f"{', '.join(f'{r:.2f}' for r in runs.inproc_rates)} | 1.00 |")
    print(f"| service (HTTP submit -> poll -> result) | {service_rate:.2f} | "
          f"{', '.join(f'{r:.2f}' for r in runs.service_rates)} | "
          f"{service_rate / inproc_rate:.2f} |")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| median added latency per job (paired, 1 worker process) | "
          f"{statistics.median(added):.1f} ms |")
    print(f"| added latency quartiles | {statistics.quantiles(added, n=4)[0]:.1f} / "
          f"{statistics.quantiles(added, n=4)[2]:.1f} ms |")
    print(f"| median pipeline overhead (latency minus the stage times the worker reports) | "
          f"{statistics.median(runs.overhead):.1f} ms |")
    print(f"| broker bytes per job (LPUSH payloads) | {broker[0] / n:,.0f} B |")
    print(f"| broker messages per job | {broker[1] / n:.1f} |")
    print(f"| largest broker message | {broker[2]:,} B |")
    print(f"| result-backend bytes per job (chord join) | {broker[3] / n:,.0f} B |")
    print(f"| mean image bytes per job (Redis blob, not on the broker) | "
          f"{sum(len(d) for _, d in pages) / n:,.0f} B |")
    print(f"| service text identical to Engine.run | {same}/{n} |")
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
