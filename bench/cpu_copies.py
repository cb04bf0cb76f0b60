"""ocrq pages/s with the line models as one session or as copies that split the rows.

    python bench/cpu_copies.py [DATA_DIR] [--limit N] [--threads N] [--copies 1,2] [--repeat N]

One in-process engine per ``OCRQ_CPU_COPIES`` value, same thread budget; images
decoded before timing, one untimed warm-up page per engine, then the engines
take turns over all pages ``--repeat`` times (each pass over the pages by one
engine at a time, so its caches stay warm as in a worker). Prints ms/page,
the ratio to the first value, and whether every page read the same text.
"""

from __future__ import annotations

import os
import time

from _common import data_parser  # first: checks that ocrq is installed

from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.peers import resolve_threads
from ocrq.settings import Settings


def main() -> int:
    ap = data_parser(__doc__)
    ap.add_argument("--threads", type=int, default=0, help="thread budget (0 = all cores)")
    ap.add_argument("--copies", default="1,2", help="OCRQ_CPU_COPIES values to compare")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the images per engine")
    args = ap.parse_args()
    threads = resolve_threads(args.threads)
    copies = [int(c) for c in args.copies.split(",")]
    images = [s.load() for s in load_manifest(args.data, limit=args.limit)]
    base = Settings.from_env().with_(threads=threads)
    engines = {c: Engine.from_settings(base.with_(cpu_copies=c)) for c in copies}
    for engine in engines.values():
        engine.run(images[0])  # warm-up, not timed
    busy = dict.fromkeys(copies, 0.0)
    texts: dict[int, list[str]] = {}
    for _ in range(args.repeat):
        for c, engine in engines.items():
            t0 = time.perf_counter()
            texts[c] = [engine.run(image).text() for image in images]
            busy[c] += time.perf_counter() - t0
    pages = len(images) * args.repeat
    first = copies[0]
    print(f"{len(images)} images from {args.data.resolve()}, repeat {args.repeat}, "
          f"threads {threads}, {os.cpu_count()} cores")
    print()
    print(f"| OCRQ_CPU_COPIES | ms/page | × copies={first} pages/s | same text as copies={first} |")
    print("|---:|---:|---:|---:|")
    for c in copies:
        same = sum(a == b for a, b in zip(texts[first], texts[c], strict=True))
        print(f"| {c} | {1000 * busy[c] / pages:.0f} | {busy[first] / busy[c]:.2f} | "
              f"{same}/{len(images)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
