"""The full service vs in-process Engine.run on the same images and cores.

    python bench/pipeline.py [DATA_DIR] [--limit N] [--concurrency 2] [--clients 4]

DATA_DIR defaults to ../shared/eval/dev. Steps:
1. in-process: Engine.run on each page in turn (models loaded and warmed first;
   ONNX Runtime threads = --inproc-threads, 0 = all cores, the `ocrq run` default).
2. the service: migrated SQLite file (or --database-url), a worker process
   (`python -m workers.cpu -c --concurrency`, each child with --worker-threads
   ONNX threads) and a waitress web process, Redis broker on its own db numbers.
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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from _common import REPO, data_parser  # puts this checkout on sys.path
from redis import Redis

from ocrq.document import PageResult
from ocrq.evaluation.dataset import load_manifest
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(env: dict[str, str], tmp: Path, concurrency: int, threads: int
                 ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cpu", "-Q", "gpu,cpu,webhooks", "-c", str(concurrency),
         "-l", "WARNING", "-n", f"bench-{os.getpid()}-{concurrency}@%h"], cwd=REPO,
        env={**env, "OCRQ_THREADS": str(threads)}, stdout=(tmp / "worker.log").open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(timeout=60)


def wait_ready(base: str, env: dict[str, str], workers: int) -> None:
    from ocrq.pipeline.app import create_celery_app

    app = create_celery_app(Settings.from_env(env))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            up = requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.ConnectionError:
            up = False
        if up and len(app.control.ping(timeout=0.5)) >= workers:
            return
        time.sleep(0.2)
    raise RuntimeError("service did not become ready")


def start_service(args: argparse.Namespace, tmp: Path) -> tuple[list[subprocess.Popen], str,
                                                                  dict[str, str]]:
    db_url = args.database_url or f"sqlite:///{tmp / 'ocrq.sqlite3'}"
    env = {**os.environ, "OCRQ_DATABASE_URL": db_url,
           "OCRQ_BROKER_URL": f"redis://127.0.0.1:6379/{args.broker_db}",
           "OCRQ_REDIS_URL": f"redis://127.0.0.1:6379/{args.store_db}"}
    from ocrq.cli.serve import upgrade

    upgrade(db_url)
    for db in (args.broker_db, args.store_db):
        Redis.from_url(f"redis://127.0.0.1:6379/{db}").flushdb()
    port = free_port()
    log = (tmp / "service.log").open("wb")
    procs = [
        subprocess.Popen([sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}",
                          "--threads=8", "--call", "web:create_app"], cwd=REPO, env=env,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
    ]
    return procs, f"http://127.0.0.1:{port}", env


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


def main() -> int:
    args = parse_args()
    samples = load_manifest(args.data, limit=args.limit)
    pages = [(s.path.name, s.path.read_bytes()) for s in samples]
    n = len(pages)

    from ocrq.engine import Engine
    from ocrq.images import decode_image

    settings = Settings.from_env(threads=args.inproc_threads)
    engine = Engine.from_settings(settings)
    engine.preload()
    engine.run(decode_image(pages[0][1], pages[0][0]), pages[0][0])  # warm-up

    def inproc(name: str, data: bytes) -> tuple[float, str]:
        t0 = time.perf_counter()  # decode counted: the service decodes too
        text = engine.run(decode_image(data, name, settings), name).text()
        return time.perf_counter() - t0, text

    tmp = Path(tempfile.mkdtemp(prefix="ocrq-bench-"))
    procs, base, env = start_service(args, tmp)
    worker = start_worker(env, tmp, args.concurrency, args.worker_threads)
    inproc_rates, service_rates, inproc_text, results = [], [], {}, []
    try:
        wait_ready(base, env, 1)
        mon = BrokerMonitor("redis://127.0.0.1:6379/0", args.broker_db, args.store_db)
        with ThreadPoolExecutor(args.concurrency) as ex:  # warm every worker process
            list(ex.map(lambda p: run_job(base, *p, 0.05), pages[: args.concurrency] * 2))
        # Throughput: the two paths take turns pass by pass, so drifting background
        # load on the machine hits both alike.
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for name, data in pages:
                inproc_text[name] = inproc(name, data)[1]
            inproc_rates.append(n / (time.perf_counter() - t0))
            mon.reset()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as ex:
                results = list(ex.map(lambda p: run_job(base, *p, 0.02), pages))
            service_rates.append(n / (time.perf_counter() - t0))
            broker = (mon.broker_bytes, mon.messages, mon.max_message, mon.backend_bytes)

        # Latency: one worker process configured like the in-process engine; page by
        # page, in-process then service, paired differences.
        stop(worker)
        worker = start_worker(env, tmp, 1, args.inproc_threads)
        wait_ready(base, env, 1)
        run_job(base, *pages[0], 0.05)
        added, overhead = [], []
        for name, data in pages:
            t_in = inproc(name, data)[0]
            t_svc, doc = run_job(base, name, data, 0.05)
            added.append((t_svc - t_in) * 1000)
            # One worker process runs the stages one after the other, so the latency
            # minus the stage times the worker reports is what the pipeline adds.
            overhead.append(t_svc * 1000 - sum(doc["result"]["timings_ms"].values()))
    finally:
        for p in [worker, *procs]:
            stop(p)

    same = sum(1 for (name, _), (_, doc) in zip(pages, results, strict=True)
               if doc["status"] == "succeeded"
               and PageResult.from_dict(doc["result"]).text() == inproc_text[name])
    inproc_rate = statistics.mean(inproc_rates)
    service_rate = statistics.mean(service_rates)
    print(f"\n{n} pages from {args.data}, {args.repeat} alternating passes; worker processes "
          f"{args.concurrency} x {args.worker_threads} ONNX threads; in-process threads "
          f"{args.inproc_threads or 'all'}; {args.clients} HTTP clients; {os.cpu_count()} cores\n")
    print("| path | pages/s (mean of passes) | passes | ratio vs in-process |")
    print("|---|---|---|---|")
    print(f"| in-process Engine.run | {inproc_rate:.2f} | "
          f"{', '.join(f'{r:.2f}' for r in inproc_rates)} | 1.00 |")
    print(f"| service (HTTP submit -> poll -> result) | {service_rate:.2f} | "
          f"{', '.join(f'{r:.2f}' for r in service_rates)} | {service_rate / inproc_rate:.2f} |")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| median added latency per job (paired, 1 worker process) | "
          f"{statistics.median(added):.1f} ms |")
    print(f"| added latency quartiles | {statistics.quantiles(added, n=4)[0]:.1f} / "
          f"{statistics.quantiles(added, n=4)[2]:.1f} ms |")
    print(f"| median pipeline overhead (latency minus the stage times the worker reports) | "
          f"{statistics.median(overhead):.1f} ms |")
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
