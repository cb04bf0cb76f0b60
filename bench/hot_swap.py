"""Hot swap cost: how fast an activation reaches every worker process, and what
swapping under load does to throughput.

    python bench/hot_swap.py [--jobs 150] [--swaps 6] [--concurrency 1]

Starts a GPU-queue worker (CPU fallback without a GPU) and a CPU worker on
real Redis and a temporary SQLite database (the same harness as the
acceptance tests), then prints a table:

- activate -> serving: seconds from `ModelControl.activate` until every live
  process reports the new version READY and active (load beside + swap);
- 1-line jobs/s with no swap vs. with str v1 <-> v2 swapped every 2 s, same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocrq.cluster.rollout import wait  # noqa: E402
from tests.integration.cluster_harness import Cluster, line_image, make_cluster  # noqa: E402


def throughput(cluster: Cluster, image: bytes, jobs: int, swap_every_s: float | None) -> float:
    stop = threading.Event()

    def swapper() -> None:
        version = 2
        while not stop.wait(swap_every_s or 0):
            cluster.control().activate("str", version, actor="bench")
            version = 3 - version

    thread = threading.Thread(target=swapper, daemon=True) if swap_every_s else None
    start = time.perf_counter()
    if thread:
        thread.start()
    ids = [cluster.submit(image) for _ in range(jobs)]
    docs = cluster.wait_jobs(ids, timeout_s=600)
    elapsed = time.perf_counter() - start
    stop.set()
    failed = [d for d in docs.values() if d["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed[0]['error']}")
    return jobs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=150)
    p.add_argument("--swaps", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = make_cluster(Path(tmp))
        cluster.start_worker("gpu", "gpu1@bench", "gpu", args.concurrency)
        cluster.start_worker("cpu", "cpu1@bench", "cpu", args.concurrency)
        try:
            cluster.wait_ready("gpu1@bench")  # one process; -c is its task threads
            cluster.wait_ready("cpu1@bench", args.concurrency)
            image = line_image("Invoice 4711")
            latencies = []
            for i in range(args.swaps):
                version = 2 if i % 2 == 0 else 1
                t0 = time.perf_counter()
                cluster.control().activate("str", version, actor="bench")
                state = wait(cluster.redis, "str", version, timeout_s=60, poll_s=0.01)
                assert state.done and not state.failed, state
                latencies.append(time.perf_counter() - t0)
            cluster.wait_jobs([cluster.submit(image) for _ in range(10)])  # warm
            calm = throughput(cluster, image, args.jobs, None)
            swapping = throughput(cluster, image, args.jobs, 2.0)
        finally:
            cluster.stop_all()
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
