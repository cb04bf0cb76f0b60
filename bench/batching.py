"""Recognition throughput with cross-job batching on vs off, several jobs at once.

    python bench/batching.py [DATA_DIR] [--limit N] [--jobs 4] [--wait-ms 3,10]
                             [--runtime onnxruntime|torch] [--device cpu|cuda] [--repeat 2]

What the GPU worker does, in one process: ``--jobs`` threads each take a page
and run ``Engine.step_recognize`` on its detected lines (detection runs once,
untimed, before). With batching on, the "str" runtime is a BatchingRuntime
that merges concurrent calls of equal shape (``OCRQ_BATCH_WAIT_MS``). Rows:
one thread without batching (the serial reference), ``--jobs`` threads
without batching, and ``--jobs`` threads with each wait in ``--wait-ms``.
Configurations take turns ``--repeat`` times; the best pass of each is kept.
Texts must be identical across all rows (checked, printed).

On a CPU a merged pass is not much cheaper than its parts (the cores are busy
either way); the point of merging is a GPU, where a pass of 64 rows costs
about what one of 8 does. Report what you measured, with the device.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import data_parser  # first: checks that ocrq is installed

from ocrq.engine import Detected, Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.settings import Settings


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__, limit=16, limit_help="pages (receipts)")
    ap.add_argument("--jobs", type=int, default=4, help="pages recognised at once (threads)")
    ap.add_argument("--wait-ms", default="3,10", help="batch waits to compare (comma list)")
    ap.add_argument("--batch-max", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads per session")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    return ap.parse_args()


def pass_once(engine: Engine, pages: list[tuple[Any, Detected]], jobs: int,
              ) -> tuple[float, list[list[Any]]]:
    def one(item: tuple[Any, Detected]) -> list[Any]:
        image, d = item
        return engine.step_recognize(image, d.rotation, d.polygons, d.flipped, skew=d.skew).texts

    t0 = time.perf_counter()
    if jobs == 1:
        texts = [one(p) for p in pages]
    else:
        with ThreadPoolExecutor(jobs) as ex:
            texts = list(ex.map(one, pages))
    return time.perf_counter() - t0, texts


def batching_of(engine: Engine) -> BatchingRuntime | None:
    """The recogniser's BatchingRuntime (on CUDA it sits inside the bucketed runtime)."""
    runtime = engine.registry.get("str").runtime
    for candidate in (runtime, getattr(runtime, "inner", None)):
        if isinstance(candidate, BatchingRuntime):
            return candidate
    return None


def main() -> int:
    args = parse_args()
    waits = [float(w) for w in args.wait_ms.split(",") if w.strip()]
    base = Settings.from_env().with_(runtime=args.runtime, device=args.device,
                                     threads=args.threads, batch_max=args.batch_max)
    samples = load_manifest(args.data, limit=args.limit)
    images = [s.load() for s in samples]  # decoding is not timed
    plain = Engine.from_settings(base.with_(batch_wait_ms=0.0))
    pages = []
    for image in images:  # detection once, untimed: only recognition is compared
        r = plain.step_rotate(image)
        pages.append((image, plain.step_detect(image, r.rotation)))
    lines = sum(len(d.polygons) for _, d in pages)

    configs: list[tuple[str, int, Engine]] = [("off", 1, plain), ("off", args.jobs, plain)]
    for w in waits:
        configs.append((f"{w:g} ms", args.jobs, Engine.from_settings(base.with_(batch_wait_ms=w))))
    best: dict[int, float] = {}
    texts: dict[int, list[list[Any]]] = {}
    before: dict[int, dict[str, Any]] = {}  # counters after the warm-up
    for i, (_, jobs, engine) in enumerate(configs):  # warm-up: loads, first-call allocations
        pass_once(engine, pages[:jobs], jobs)
        runtime = batching_of(engine)
        if runtime is not None:
            before[i] = runtime.stats()
    for _ in range(args.repeat):
        for i, (_, jobs, engine) in enumerate(configs):
            seconds, out = pass_once(engine, pages, jobs)
            best[i] = min(best.get(i, float("inf")), seconds)
            texts.setdefault(i, out)

    identical = all(t == texts[0] for t in texts.values())
    print(f"{len(pages)} pages ({lines} lines) from {args.data.resolve()}, "
          f"{args.runtime} on {args.device}, intra-op threads {args.threads or 'all'}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"batch_max {args.batch_max}, best of {args.repeat}")
    print(f"texts identical across rows: {'yes' if identical else 'NO'}")
    print()
    print("| batching | jobs at once | lines/s | pages/s | × serial | × same jobs, off "
          "| str passes / calls | rows per pass |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    serial = lines / best[0]
    off_jobs = lines / best[1]
    for i, (label, jobs, engine) in enumerate(configs):
        rate = lines / best[i]
        runtime = batching_of(engine)
        merge = rows = "-"
        if runtime is not None:
            s, b = runtime.stats(), before[i]
            calls, passes = s["calls"] - b["calls"], s["passes"] - b["passes"]
            merge = f"{passes} / {calls}"
            rows = f"{(s['rows'] - b['rows']) / max(passes, 1):.1f}"
        print(f"| {label} | {jobs} | {rate:.0f} | {len(pages) / best[i]:.2f} | "
              f"{rate / serial:.2f} | {rate / off_jobs:.2f} | {merge} | {rows} |")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
