"""Throughput of ocrq vs RapidOCR (direct) vs Tesseract 5 on the same pages and threads.

    python bench/engine.py [DATA_DIR] [--limit N] [--threads N] [--repeat N]

DATA_DIR defaults to ../shared/eval/dev relative to the repository. Images are
decoded before timing; every engine first reads one page untimed (model loads,
first-call allocations); then the engines take turns page by page (so drifting
background load hits all alike) over all pages ``--repeat`` times. pages/s = pages read / sum of
the wall time of the predict calls. Per-stage milliseconds are what each engine
reports: ocrq its PageResult.timings_ms, RapidOCR its elapse list [det, cls,
rec], Tesseract nothing (one CLI process per page, so its time includes
process start and model load). Prints markdown tables with ratios vs RapidOCR.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict

from _common import data_parser  # first: checks that ocrq is installed

from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.peers import PeerUnavailable, build_engine, resolve_threads

BASELINE = "rapidocr"


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__)
    ap.add_argument("--threads", type=int, default=0, help="threads per engine (0 = all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the images per engine")
    ap.add_argument(
        "--engine",
        dest="engines",
        action="append",
        help="engine(s) to time (default: ocrq, rapidocr, tesseract)",
    )
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    threads = resolve_threads(args.threads)
    samples = load_manifest(args.data, limit=args.limit)
    images = [(s.path, s.load()) for s in samples]  # decoding is not timed
    engines = args.engines or ["ocrq", "rapidocr", "tesseract"]

    built = {}
    load_s: dict[str, float] = {}
    for name in engines:
        try:
            t0 = time.perf_counter()
            built[name] = build_engine(name, threads)
            built[name].predict(images[0][1], images[0][0])  # warm-up, not timed
            load_s[name] = time.perf_counter() - t0
        except PeerUnavailable as exc:
            print(f"skipping {name}: {exc.message}", file=sys.stderr)

    busy: dict[str, float] = defaultdict(float)
    stages: dict[str, dict[str, float]] = {name: defaultdict(float) for name in built}
    for _ in range(args.repeat):
        for path, image in images:
            # Engines take turns page by page, so a change in background load
            # on the machine hits all of them alike and the ratios stay fair.
            for name, engine in built.items():
                pred = engine.predict(image, path)
                busy[name] += pred.seconds
                for stage, ms in pred.stages_ms.items():
                    stages[name][stage] += ms
    pages = len(images) * args.repeat
    rows = {
        name: {"pages": pages, "busy": busy[name], "load": load_s[name], "stages": stages[name]}
        for name in built
    }

    print(
        f"{len(images)} images from {args.data.resolve()}, repeat {args.repeat}, "
        f"threads {threads}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    print()
    print_tables(rows)
    return 0


def print_tables(rows: dict[str, dict]) -> None:
    base = rows.get(BASELINE)
    base_rate = base["pages"] / base["busy"] if base else None
    print("| engine | pages | pages/s | s/page | × RapidOCR pages/s | warm-up s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        rate = r["pages"] / r["busy"]
        ratio = f"{rate / base_rate:.2f}" if base_rate else "n/a"
        print(
            f"| {name} | {r['pages']} | {rate:.2f} | {r['busy'] / r['pages']:.3f} | {ratio} | "
            f"{r['load']:.1f} |"
        )
    print()
    print("| engine | stage | ms/page | share of page time |")
    print("|---|---|---:|---:|")
    for name, r in rows.items():
        page_ms = 1000 * r["busy"] / r["pages"]
        if not r["stages"]:
            print(f"| {name} | (total only) | {page_ms:.0f} | 100% |")
        for stage, total in r["stages"].items():
            ms = total / r["pages"]
            print(f"| {name} | {stage} | {ms:.0f} | {100 * ms / page_ms:.0f}% |")


if __name__ == "__main__":
    raise SystemExit(main())
