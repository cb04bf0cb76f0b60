"""Text detection: PP-OCR DB network -> text-line polygons with scores.

Resolution policy: the DB network reads text well when characters are roughly
12-40 px tall at its input. A 600 px receipt is read near native size; a
5000x7000 page scan is reduced. We run once at a scale bounded by
``max_side``/``min_side``; if the text found is very small at that scale we run
once more at the scale that brings the median line to ``target_text_px``
(never above native size x ``max_upscale``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

from ocrq.models.runtimes.inputs import run_images
from ocrq.models.states import LoadedModel
from ocrq.stages.ink_look import InkLook, ink_candidates
from ocrq.stages.quads import order_quad, quad_height, quad_width


@dataclass(frozen=True)
class Region:
    polygon: np.ndarray  # (4, 2) float32, clockwise from top-left, image pixels
    score: float
    # Below box_thresh, above weak_thresh, and short: a candidate only, which the
    # engine keeps when recognition reads it confidently (Engine._confirm).
    weak: bool = False


@dataclass(frozen=True)
class DetectOptions:
    # Swept on the 50 SROIE dev receipts (BENCHMARKS.md): 1024/448 reads as
    # well as 1600/640 (word F1 0.860 vs 0.858, char F1 0.982 vs 0.981,
    # detection recall 0.9865 vs 0.9873) for 28% less CPU; 896/416 starts
    # losing boxes (recall 0.980), 768/384 loses text.
    max_side: int = 1024  # longest side at the network input (first pass)
    min_side: int = 448  # shortest side is brought up to this (small images)
    max_pixels: int = 3_000_000  # bounds the second pass on huge pages
    min_text_px: float = 11.0  # median line height below this triggers a second pass
    target_text_px: float = 22.0
    max_upscale: float = 2.0
    thresh: float = 0.3  # probability threshold of the binary map
    box_thresh: float = 0.5  # mean probability inside a box to keep it
    unclip_ratio: float = 1.6
    min_size: float = 3.0
    max_candidates: int = 5000
    # A second look for what DB scores under box_thresh: short boxes (at most
    # weak_max_aspect times as wide as tall: a lone digit, a short code) scoring at
    # least this come back as weak candidates; 0 = none. DB's score for thin
    # isolated strokes ("1", "I", "l") is low by construction (the shrunk map of a
    # narrow glyph is a few pixels wide), whatever the page.
    weak_thresh: float = 0.0
    weak_max_aspect: float = 3.0
    # Lone glyphs DB does not box, not even weakly (stages/ink_look.py): weak
    # candidates from the page's own ink; None = no such look.
    ink_look: InkLook | None = None


def detect(
    model: LoadedModel, images: Sequence[np.ndarray], options: DetectOptions | None = None
) -> list[list[Region]]:
    """Detect text lines on each image (BGR uint8). Batch-first; no state."""
    opts = options or DetectOptions()
    return [_detect_one(model, img, opts) for img in images]


def _detect_one(model: LoadedModel, image: np.ndarray, opts: DetectOptions) -> list[Region]:
    h, w = image.shape[:2]
    scale = _first_scale(h, w, opts)
    regions = _run(model, image, scale, opts)
    strong = [r for r in regions if not r.weak]
    if strong:
        heights = np.array([quad_height(r.polygon) for r in strong])
        text_px = float(np.median(heights)) * scale
        if text_px < opts.min_text_px:
            better = scale * opts.target_text_px / max(text_px, 1.0)
            better = min(better, opts.max_upscale, np.sqrt(opts.max_pixels / (h * w)))
            if better > scale * 1.25:
                regions = _run(model, image, better, opts)
    if opts.ink_look is not None:
        strong = [r.polygon for r in regions if not r.weak]
        # DB's own weak boxes are the second look's already (a "12" is one box, two
        # blobs): the ink look proposes what lies outside them.
        weak = [r.polygon for r in regions if r.weak]
        regions += [Region(q, 0.0, True)
                    for q in ink_candidates(image, strong, opts.ink_look, weak)]
    return regions


def _first_scale(h: int, w: int, opts: DetectOptions) -> float:
    scale = min(1.0, opts.max_side / max(h, w))
    if min(h, w) * scale < opts.min_side:
        scale = min(opts.min_side / min(h, w), opts.max_upscale, opts.max_side / max(h, w) * 2)
    return scale


def _run(model: LoadedModel, image: np.ndarray, scale: float, opts: DetectOptions) -> list[Region]:
    h, w = image.shape[:2]
    mult = int(model.manifest.input.get("multiple", 32))
    rh = max(mult, int(round(h * scale / mult)) * mult)
    rw = max(mult, int(round(w * scale / mult)) * mult)
    interp = cv2.INTER_AREA if rh < h else cv2.INTER_LINEAR
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    prob = run_images(model.runtime, resized[None], model.manifest.input)[0, 0]
    return boxes_from_map(prob, w, h, opts)


def boxes_from_map(prob: np.ndarray, width: int, height: int, opts: DetectOptions) -> list[Region]:
    """DB post-processing: binarise, contours, min-area boxes, score, unclip."""
    mh, mw = prob.shape
    bitmap = (prob > opts.thresh).astype(np.uint8)
    # Dilating with a 2x2 kernel joins characters split by the threshold.
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    sx, sy = width / mw, height / mh
    out: list[Region] = []
    for contour in contours[: opts.max_candidates]:
        box, short = _mini_box(contour)
        if short < opts.min_size:
            continue
        score = _box_score(prob, box)
        weak = score < opts.box_thresh
        if weak and not (opts.weak_thresh and score >= opts.weak_thresh):
            continue
        expanded = _unclip(box, opts.unclip_ratio)
        if expanded is None:
            continue
        box, short = _mini_box(expanded)
        if short < opts.min_size + 2:
            continue
        box[:, 0] = np.clip(box[:, 0] * sx, 0, width - 1)
        box[:, 1] = np.clip(box[:, 1] * sy, 0, height - 1)
        poly = order_quad(box)
        if quad_width(poly) <= 3 or quad_height(poly) <= 3:
            continue
        if weak and quad_width(poly) > opts.weak_max_aspect * quad_height(poly):
            continue
        out.append(Region(poly.astype(np.float32), float(score), weak))
    return out


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    return cv2.boxPoints(rect).astype(np.float32), float(min(rect[1]))


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box (a mask on its bounding rectangle)."""
    h, w = prob.shape
    # Python's floor/ceil/min/max on the four corners: what np.clip did on
    # numpy scalars, at a tenth of the cost per box.
    xs, ys = box[:, 0].tolist(), box[:, 1].tolist()
    xmin = min(max(math.floor(min(xs)), 0), w - 1)
    xmax = min(max(math.ceil(max(xs)), 0), w - 1)
    ymin = min(max(math.floor(min(ys)), 0), h - 1)
    ymax = min(max(math.ceil(max(ys)), 0), h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    pts = (box - np.array([xmin, ymin], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    area = abs(cv2.contourArea(box))
    length = cv2.arcLength(box, True)
    if length <= 0:
        return None
    offset = pyclipper.PyclipperOffset()
    path = box.reshape(-1, 2).tolist()  # Python floats, as pyclipper takes them
    offset.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * ratio / length)
    if not paths:
        return None
    return np.asarray(paths[0], np.float32).reshape(-1, 1, 2)
