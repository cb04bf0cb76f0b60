"""What the second reading buys and costs, by threshold (issue 10).

    python bench/second_reading.py [DATA_DIR] [--limit N] [--thresholds 0,0.7,0.8,0.9,0.95]
                                   [--threads N]

One in-process engine per ``OCRQ_SECOND_READING`` threshold (0 = one recogniser),
each with its own models, reading the same receipts in turn page by page (the
engines take turns, so background load hits all alike: ``ocrq.evaluation``'s
runner, the body of ``ocrq eval``). Prints word and character F1 (micro-averaged
over pages), pages/s, and pages/s relative to the engine without the second
reading. RapidOCR is not run here: bench/engine.py gives the ratio against it.
"""

from __future__ import annotations

import argparse

from _common import data_parser  # first: checks that ocrq is installed

from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.peers import OcrqEngine, resolve_threads
from ocrq.evaluation.runner import evaluate
from ocrq.settings import Settings


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__)
    ap.add_argument("--thresholds", default="0,0.7,0.8,0.9,0.95",
                    help="OCRQ_SECOND_READING values, comma-separated (0 = off)")
    ap.add_argument("--threads", type=int, default=0, help="threads per engine (0 = all cores)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    samples = load_manifest(args.data, limit=args.limit)
    threads = resolve_threads(args.threads)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    base = Settings.from_env().with_(threads=threads)
    engines = [OcrqEngine(threads, name=f"second_reading={t:g}",
                          engine=Engine.from_settings(base.with_(second_reading=t)))
               for t in thresholds]
    results = evaluate(engines, samples)
    rates = [1 / max(r.corpus.seconds_per_page, 1e-9) for r in results]
    first = rates[0]
    print(f"{len(samples)} images from {args.data}, {threads} threads\n")
    print("| threshold | word P | word R | word F1 | char F1 | pages/s | x first row |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for t, r, rate in zip(thresholds, results, rates, strict=True):
        c = r.corpus
        print(f"| {t:g} | {c.words.precision:.4f} | {c.words.recall:.4f} | {c.words.f1:.4f} "
              f"| {c.chars.f1:.4f} | {rate:.2f} | {rate / first:.2f} |")


if __name__ == "__main__":
    main()
