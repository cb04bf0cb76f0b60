"""Do a document's pages fan out over workers? (issue 15: "a 20-page PDF finishes
faster with 2 CPU workers than with 1")

    python bench/document_fanout.py [--pages 20] [--workers 1,2] [--repeat 1]

Starts a private Redis, a SQLite database and the web (waitress) through
``ocrq.localcluster``; then, for each count in ``--workers``, that many CPU
worker nodes (``python -m workers.cpu -c 1``, each with one intra-op thread:
one core's worth, as one small container) consuming every queue. It submits
one ``--pages``-page PDF of generated A4 text pages (bench/documents.py's
pages) and times POST to the job's ``finished_at``, after one untimed warm-up
document. Prints seconds per document, pages/s and the ratio to one worker;
on this 2-core machine two one-core workers is the most that can help.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
from _machine import locate_redis_server  # first: checks that ocrq is installed
from documents import a4_page

from ocrq.cli.serve import upgrade
from ocrq.localcluster import LocalCluster, WorkerSpec, free_port, wait_redis
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings


def pdf(pages: int) -> bytes:
    images = [a4_page(n).convert("RGB") for n in range(pages)]
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=200)
    return buf.getvalue()


def run_document(base: str, data: bytes, deadline_s: float = 900) -> float:
    """Seconds from POST to the job's finished_at (the worker's clock, this machine)."""
    sent = time.time()
    resp = requests.post(f"{base}/v1/jobs", files={"image": ("doc.pdf", data,
                                                             "application/pdf")}, timeout=60)
    resp.raise_for_status()
    job = resp.json()["id"]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = requests.get(f"{base}/v1/jobs/{job}", timeout=30).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            if status["status"] != "succeeded":
                raise RuntimeError(f"document job {job}: {status}")
            finished = datetime.fromisoformat(status["finished_at"].replace("Z", "+00:00"))
            return finished.timestamp() - sent
        time.sleep(0.2)
    raise TimeoutError(f"document job {job} not done in {deadline_s} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="worker nodes per run (comma list)")
    ap.add_argument("--repeat", type=int, default=1, help="timed documents per row (best kept)")
    args = ap.parse_args()
    data = pdf(args.pages)
    tmp = Path(tempfile.mkdtemp(prefix="ocrq-fanout-"))
    s = Settings.from_env(database_url=f"sqlite:///{tmp / 'ocrq.sqlite3'}",
                          model_root=tmp / "models", webhook_secret=secrets.token_hex(16),
                          auth="none", threads=1)
    with LocalCluster(s, log_dir=tmp) as cluster:
        port = _redis(cluster, tmp)
        s = s.with_(broker_url=f"redis://127.0.0.1:{port}/0",
                    redis_url=f"redis://127.0.0.1:{port}/1")
        cluster.settings = s
        upgrade(s.database_url)
        ModelRepository(s.model_root).ensure_defaults()
        base = cluster.start_web(port=free_port(), settings=s).url
        queues = f"{s.queue_gpu},{s.queue_cpu},{s.queue_webhooks}"
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"{args.pages}-page PDF ({len(data) // 1024} KiB), {os.cpu_count()} cores; {load}")
        print("\n| CPU worker nodes (1 process, 1 thread each) | s per document | pages/s "
              "| x one node |\n|---:|---:|---:|---:|")
        first = 0.0
        for n in (int(w) for w in args.workers.split(",")):
            names = [f"fan{n}-{i}" for i in range(n)]
            specs = [WorkerSpec("cpu", name, queues, 1, loglevel="WARNING") for name in names]
            for spec in specs:
                cluster.start_worker(spec, s)
            cluster.wait_ready(["web", *(spec.node for spec in specs)])
            run_document(base, data)  # warm-up: first-call costs of every process
            best = min(run_document(base, data) for _ in range(args.repeat))
            first = first or best
            print(f"| {n} | {best:.1f} | {args.pages / best:.2f} | {first / best:.2f} |",
                  flush=True)
            cluster.stop([spec.node for spec in specs])
    return 0


def _redis(cluster: LocalCluster, tmp: Path) -> int:
    port = free_port()
    cluster.start_process("redis", [locate_redis_server(), "--port", str(port), "--bind",
                                    "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--dir", str(tmp)], service=True)
    wait_redis(f"redis://127.0.0.1:{port}/0")
    return port


if __name__ == "__main__":
    raise SystemExit(main())
