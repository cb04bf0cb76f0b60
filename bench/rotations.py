"""Does a turned or skewed page read like the upright page? (issue 10)

    python bench/rotations.py [DATA_DIR] [--limit N] [--angles 90,180,270,5,-5,10,-10]
                              [--json OUT.jsonl]

Every receipt is read upright and then turned by each angle (counter-clockwise,
the OpenCV/PIL convention; negative: clockwise). Multiples of 90° are turned
losslessly (``cv2.rotate``); other angles are resampled (``cv2.warpAffine``,
bilinear) onto a canvas enlarged so that nothing is cut, padded with white.
All pages go through the in-process Engine, like ``ocrq run``.

Per angle: pages whose line texts (in reading order) are identical to the
upright page's, pages that differ, word F1 against the ground truth
(micro-averaged, ``ocrq.evaluation.metrics``) next to the upright pages' F1,
and the mean page time. ``--json`` writes each page's texts for a closer look.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from _common import data_parser  # first: checks that ocrq is installed

from ocrq.engine import Engine
from ocrq.evaluation.dataset import load_manifest
from ocrq.evaluation.metrics import Counts, word_counts
from ocrq.settings import Settings

DEFAULT_ANGLES = "90,180,270,5,-5,10,-10"
QUARTER = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
           270: cv2.ROTATE_90_CLOCKWISE}


def parse_args() -> argparse.Namespace:
    ap = data_parser(__doc__)
    ap.add_argument("--angles", default=DEFAULT_ANGLES,
                    help="degrees counter-clockwise, comma-separated (upright is always read)")
    ap.add_argument("--threads", type=int, default=0, help="threads per model (0 = all cores)")
    ap.add_argument("--json", type=Path, default=None, help="write every page's lines here")
    return ap.parse_args()


def turn(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` turned counter-clockwise by ``degrees``; nothing cut, white border."""
    if degrees % 90 == 0:
        k = int(degrees) % 360
        return image if k == 0 else cv2.rotate(image, QUARTER[k])
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[0, 2] += new_w / 2 - w / 2
    m[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(image, m, (new_w, new_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))


def main() -> int:
    args = parse_args()
    angles = [0.0] + [float(a) for a in args.angles.split(",") if a.strip()]
    samples = load_manifest(args.data, limit=args.limit)
    engine = Engine.from_settings(Settings.from_env().with_(threads=args.threads))
    engine.preload()
    words: dict[float, Counts] = defaultdict(Counts)
    same: dict[float, list[str]] = defaultdict(list)
    differ: dict[float, list[str]] = defaultdict(list)
    seconds: dict[float, float] = defaultdict(float)
    out = args.json.open("w", encoding="utf-8") if args.json else None
    for sample in samples:
        image = sample.load()
        truth = "\n".join(ln.text for ln in sample.lines)
        upright: list[str] = []
        for angle in angles:
            page_image = turn(image, angle)
            t0 = time.perf_counter()
            page = engine.run(page_image, sample.name)
            seconds[angle] += time.perf_counter() - t0
            texts = [ln.text for ln in page.lines]
            if angle == 0:
                upright = texts
            (same if texts == upright else differ)[angle].append(sample.name)
            words[angle] += word_counts(page.text(), truth)
            if out:
                out.write(json.dumps({"image": sample.name, "angle": angle,
                                      "rotation": page.rotation, "lines": texts}) + "\n")
    if out:
        out.close()
    print(f"{len(samples)} images from {args.data.resolve()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}")
    print()
    print_table(angles, len(samples), words, same, differ, seconds)
    return 0


def print_table(angles: list[float], n: int, words: dict[float, Counts],
                same: dict[float, list[str]], differ: dict[float, list[str]],
                seconds: dict[float, float]) -> None:
    base = words[0.0].f1
    print("| angle (ccw) | pages | identical to upright | word F1 | upright word F1 | Δ F1 "
          "| s/page |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for a in angles:
        f1 = words[a].f1
        print(f"| {a:g}° | {n} | {len(same[a])} | {f1:.4f} | {base:.4f} | {f1 - base:+.4f} | "
              f"{seconds[a] / max(n, 1):.2f} |")
    print()
    for a in angles:
        if differ[a]:
            names = ", ".join(differ[a]) if len(differ[a]) <= 10 else "(--json for which)"
            print(f"{a:g}°: differs from upright on {len(differ[a])} pages: {names}")


if __name__ == "__main__":
    raise SystemExit(main())
