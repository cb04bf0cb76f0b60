"""Per-page cost of the ``table`` stage (model kind ``tcd``) against reading the page.

    python bench/table_cost.py [DATA_DIR] [--limit N] [--repeat N] [--threads N]

Each image of DATA_DIR (default ../shared/eval/tables/dev; a folder of images,
its manifest.jsonl ignored) is read once in-process (rotate, detect, recognize,
reorder: the ``table`` plan's OCR steps), timed; then the table stage runs
``--repeat`` times on that read page and the best time counts (the stage is
deterministic; the best of N is the least disturbed by other load). The table
prints both per page and their ratio, then mean/median/max.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import REPO, data_parser  # first: checks that ocrq is installed

from ocrq.engine import Engine
from ocrq.images import load_image
from ocrq.plugin_stages import run_stage
from ocrq.settings import Settings

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def main() -> None:
    ap = data_parser(__doc__)
    ap.set_defaults(data=REPO / ".." / "shared" / "eval" / "tables" / "dev")
    ap.add_argument("--repeat", type=int, default=3, help="stage runs per page (best counts)")
    ap.add_argument("--threads", type=int, default=0, help="model threads (0 = all cores)")
    args = ap.parse_args()
    settings = Settings.from_env(threads=args.threads)
    engine = Engine.from_settings(settings)
    paths = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in SUFFIXES)
    paths = paths[:args.limit] if args.limit else paths
    engine.run(load_image(paths[0], settings))  # warm the models once
    rows = []
    print(f"{'image':<22} {'px':>11} {'read ms':>8} {'table ms':>9} {'ratio':>6} {'cells':>5}")
    for path in paths:
        image = load_image(path, settings)
        t0 = time.perf_counter()
        page = engine.run(image, path.name).to_dict()
        read_ms = (time.perf_counter() - t0) * 1000
        best, cells = float("inf"), 0
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            out = run_stage(engine, "table", image, page).output
            best = min(best, (time.perf_counter() - t0) * 1000)
            cells = sum(len(t["cells"]) for t in out["tables"])
        rows.append((read_ms, best))
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{path.name:<22} {size:>11} {read_ms:>8.0f} {best:>9.1f} {best / read_ms:>6.3f} "
              f"{cells:>5}")
    for name, pick in (("mean", statistics.fmean), ("median", statistics.median), ("max", max)):
        read, table = pick(r for r, _ in rows), pick(t for _, t in rows)
        ratio = pick(t / r for r, t in rows)
        print(f"{name:<22} {'':>11} {read:>8.0f} {table:>9.1f} {ratio:>6.3f}")


if __name__ == "__main__":
    main()
