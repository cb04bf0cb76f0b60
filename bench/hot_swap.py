"""Hot swap cost: how fast an activation reaches every worker process, and what
swapping under load does to throughput.

    python bench/hot_swap.py [--jobs 150] [--swaps 6] [--concurrency 1]
                             [--redis redis://127.0.0.1:6379] [--broker-db 2] [--store-db 3]

Starts a GPU-queue worker (CPU fallback without a GPU) and a CPU worker
(ocrq.localcluster, as `ocrq serve` starts workers) on a running Redis (the two
db numbers are flushed) and a temporary SQLite database, with version 2 of
"str" a copy of version 1, then prints a table:

- activate -> serving: seconds from `ModelControl.activate` until every live
  process reports the new version READY and active (load beside + swap);
- 1-line jobs/s with no swap vs. with str v1 <-> v2 swapped every 2 s, same run.

Quick check that it works: ``python bench/hot_swap.py --jobs 10 --swaps 2``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _service import Deployment, line_image  # first: checks that ocrq is installed

# isort: split
from ocrq.cluster.rollout import wait
from ocrq.localcluster import WorkerSpec

TID = "ocr-upright"  # one upright line: no orientation model, as in the acceptance tests


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=150, help="jobs per throughput pass")
    p.add_argument("--swaps", type=int, default=6, help="activations timed")
    p.add_argument("--concurrency", type=int, default=1,
                   help="CPU worker processes; GPU worker task threads")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per model")
    p.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server (no db)")
    p.add_argument("--broker-db", type=int, default=2)
    p.add_argument("--store-db", type=int, default=3)
    return p.parse_args()


def throughput(d: Deployment, image: bytes, jobs: int, swap_every_s: float | None) -> float:
    stop = threading.Event()

    def swapper() -> None:
        version = 2
        while not stop.wait(swap_every_s or 0):
            d.control().activate("str", version, actor="bench")
            version = 3 - version

    thread = threading.Thread(target=swapper, daemon=True) if swap_every_s else None
    start = time.perf_counter()
    if thread:
        thread.start()
    docs = d.wait_jobs([d.submit(image, tid=TID) for _ in range(jobs)])
    elapsed = time.perf_counter() - start
    stop.set()
    failed = [doc for doc in docs.values() if doc["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed[0]['error']}")
    return jobs / elapsed


def activation_latencies(d: Deployment, swaps: int) -> list[float]:
    """Seconds from activate until every live process serves the version, ``swaps`` times."""
    latencies = []
    for i in range(swaps):
        version = 2 if i % 2 == 0 else 1
        t0 = time.perf_counter()
        d.control().activate("str", version, actor="bench")
        state = wait(d.services.redis, "str", version, timeout_s=60, poll_s=0.01)
        if not state.done or state.failed:
            raise SystemExit(f"activating str v{version} did not complete: {state}")
        latencies.append(time.perf_counter() - t0)
    return latencies


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp, Deployment.create(
            Path(tmp), args.redis, args.broker_db, args.store_db, threads=args.threads,
            heartbeat_ttl_s=3) as d:
        repo = d.repo
        repo.add_version("str", repo.manifest("str", 1).weights_path)  # v2: same weights
        d.control().activate("str", 1, actor="bench")
        d.cluster.start_worker(WorkerSpec("gpu", "gpu1-bench", "gpu", args.concurrency))
        d.cluster.start_worker(WorkerSpec("cpu", "cpu1-bench", "cpu", args.concurrency))
        d.cluster.wait_ready()
        latencies = activation_latencies(d, args.swaps)
        image = line_image("Invoice 4711")
        d.wait_jobs([d.submit(image, tid=TID) for _ in range(10)])  # warm
        calm = throughput(d, image, args.jobs, None)
        swapping = throughput(d, image, args.jobs, 2.0)
    procs = 1 + args.concurrency
    print(f"| measure ({procs} worker processes, str = PP-OCRv4 rec, 10.9 MB) | value |")
    print("|---|---:|")
    print(f"| activate -> serving everywhere, median of {args.swaps} (s) | "
          f"{statistics.median(latencies):.3f} |")
    print(f"| activate -> serving everywhere, max (s) | {max(latencies):.3f} |")
    print(f"| 1-line jobs/s, no swap ({args.jobs} jobs) | {calm:.1f} |")
    print(f"| 1-line jobs/s, swap every 2 s ({args.jobs} jobs) | {swapping:.1f} |")
    print(f"| ratio swapping / no swap | {swapping / calm:.2f} |")


if __name__ == "__main__":
    main()
