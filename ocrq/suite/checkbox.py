"""Checkbox and radio-button detection (issue 13), as ocrq's own plug-in.

- Model kind ``chk``: the detector's parameters, a JSON "weights" file made by
  code (suite/params.py) and pinned by its sha256 like any weight file. The classic
  CV below reads every number it uses from that file, so a better-tuned or a
  learned detector's parameters replace it with ``ocrq models import chk FILE``.
- Stage ``checkbox``: square and round outlines (checkbox_cv.py), ticked or not,
  letters that look like boxes left out, each attached to the recognised line
  that labels it.

Everything is measured on the upright page; polygons are returned on the image
as submitted, clockwise from the box's top-left, like the OCR lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ocrq.plugins import Plugin, StageInput, StageSpec
from ocrq.suite.checkbox_cv import Box, detect, form_ink
from ocrq.suite.params import params_model

# Tuned on generated forms (tests/unit/test_checkbox.py: boxes ticked with a
# check mark, a cross or a fill, 9-48 px, scan noise), never on the dev images.
PARAMS: dict[str, Any] = {
    "format": "ocrq-checkbox-cv/1",
    "adaptive_block": 25,  # adaptive threshold window (px) and offset (grey levels)
    "adaptive_c": 12,
    "min_side": 9,  # box side range in px; the upper bound grows with the page
    "max_side": 64,
    "max_side_frac": 0.04,
    "max_aspect": 1.3,
    "side_band": 0.2,  # band of the box side searched for its border, share of side
    "side_cover": 0.8,  # share of each side that must be inked
    "corner": 0.1,  # corner square that must hold ink, share of side
    "circle_area": [0.68, 0.9],  # contour area / bbox area of a disc is pi/4
    "circle_solidity": 0.9,
    "ring_cover": 0.8,
    "inner_pad": 0.22,  # interior inset, share of side (plus the border)
    "ticked_fill": 0.1,  # ink share inside a ticked box
    "glyph_gap": 0.35,  # a letter's neighbour in its word is closer than this, in sides
    "glyph_height": 0.6,  # a square shorter than this share of its line may be a letter
    "label_gap": 12.0,  # farthest label, in box sides
    "box_chars": "○◯●◉□■☐☑☒✓✔✗✘口[]()|Oo0QD",  # what OCR reads a box in its line as
}
PARAMS_SHA256 = "64140a30aac55382883525ab010911fc963a3fc5041e745715b08cd8457a3bea"


# -- the page's geometry: lines are on the image as submitted, the stage sees it upright

def to_upright(pts: np.ndarray, rotation: int, width: int, height: int,
               back: bool = False) -> np.ndarray:
    """Points on the submitted ``width`` x ``height`` image -> on it turned
    clockwise by ``rotation`` (what ``rotate_image`` does to the pixels); with
    ``back``, the other way."""
    x, y = pts[:, 0], pts[:, 1]
    turn = {90: 270, 270: 90}.get(rotation % 360, rotation % 360) if back else rotation % 360
    w, h = (height, width) if back and turn in (90, 270) else (width, height)
    out = {0: (x, y), 90: (h - y, x), 180: (w - x, h - y), 270: (y, w - x)}
    return np.stack(out[turn], axis=1)


@dataclass(frozen=True)
class Line:
    order: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float


def upright_lines(page: StageInput) -> list[Line]:
    rotation = int(page.page.get("rotation", 0)) % 360
    h, w = page.image.shape[:2]
    width, height = (h, w) if rotation in (90, 270) else (w, h)  # the submitted size
    out = []
    for i, ln in enumerate(page.page.get("lines", [])):
        pts = to_upright(np.asarray(ln["polygon"], np.float64), rotation, width, height)
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        out.append(Line(int(ln.get("order", i)), str(ln.get("text", "")), x0, y0, x1, y1))
    return out


def _row_overlap(box: Box, ln: Line) -> float:
    top, bottom = max(box.y, ln.y0), min(box.y + box.h, ln.y1)
    return max(0.0, bottom - top) / max(1.0, min(box.h, ln.y1 - ln.y0))


def label_of(box: Box, lines: list[Line], p: dict[str, Any]) -> Line | None:
    """The line holding the box, else the nearest on its row to the right, else to
    the left, else the nearest below (a box above its caption), within
    ``label_gap`` box sides."""
    cx, cy, reach = box.x + box.w / 2, box.y + box.h / 2, float(p["label_gap"]) * box.side
    # the box read as a line of its own ("口", "O", "xo") is no label
    lines = [ln for ln in lines if not (_row_overlap(box, ln) >= 0.4 and min(
        ln.x1, box.x + box.w) - max(ln.x0, box.x) >= 0.5 * (ln.x1 - ln.x0))]
    holding = [ln for ln in lines if ln.x0 <= cx <= ln.x1 and ln.y0 <= cy <= ln.y1]
    if holding:
        return holding[0]
    row = [ln for ln in lines if _row_overlap(box, ln) >= 0.4]
    right = [(ln.x0 - (box.x + box.w), ln) for ln in row if ln.x0 >= cx]
    left = [(box.x - ln.x1, ln) for ln in row if ln.x1 <= cx]
    below = [(ln.y0 - (box.y + box.h), ln) for ln in lines
             if ln.y0 >= cy and ln.x0 - box.w <= cx <= ln.x1 + box.w]
    for side in (right, left, below):
        near = [(d, ln) for d, ln in side if d <= reach]
        if near:
            return min(near, key=lambda t: t[0])[1]
    return None


def label_text(box: Box, ln: Line, p: dict[str, Any]) -> str:
    """The line's text without the box itself, when the text detector took the box
    into its label's line (read as "O", "口", "[]"...): the word on the box's side
    made of box characters only goes."""
    words = ln.text.split()
    cx = box.x + box.w / 2
    if not (ln.x0 <= cx <= ln.x1) or len(words) < 2:
        return ln.text.strip()
    chars = set(str(p["box_chars"]))
    at = 0 if cx < (ln.x0 + ln.x1) / 2 else -1
    if len(words[at]) <= 2 and set(words[at]) <= chars:
        words.pop(at)
    return " ".join(words)


def _stem(box: Box, ink: np.ndarray) -> bool:
    """A side that runs on past the top or the bottom for a third of the box: the
    stem of "d", "b", "p", "q" beside its bowl (a box's sides stop at its corners)."""
    reach = max(2, box.h // 3)
    above, below = slice(max(0, box.y - reach), box.y), slice(box.y + box.h,
                                                             box.y + box.h + reach)
    for col in (box.x, box.x + box.w - 1):
        near = slice(max(0, col - 1), col + 2)
        for rows in (above, below):
            run = ink[rows, near] > 0
            if len(run) == reach and bool(run.any(axis=1).all()):
                return True
    return False


def is_glyph(box: Box, fill: float, ink: np.ndarray, lines: list[Line],
             p: dict[str, Any]) -> bool:
    """An outline that is a letter: inside a recognised line, with ink right next
    to it on the row (within a word). Square letters ("a", "e", "o" thickened by a
    scan) are lower-case sized: a box in the line is as tall as its capitals."""
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    holding = [ln for ln in lines if ln.x0 <= cx <= ln.x1 and ln.y0 <= cy <= ln.y1]
    if not holding or (box.shape == "box" and box.h >= float(p["glyph_height"]) * min(
            ln.y1 - ln.y0 for ln in holding)):
        return False
    # an empty bowl with a stem: "d", "b", "p", "q" (a tick out of a box fills it)
    if box.shape == "box" and fill < float(p["ticked_fill"]) and _stem(box, ink):
        return True
    gap = max(2, int(round(float(p["glyph_gap"]) * box.side)))
    top, bottom = max(0, box.y - box.h // 2), box.y + box.h + box.h // 2
    strips = [ink[top:bottom, max(0, box.x - gap):max(0, box.x - 1)] > 0,
              ink[top:bottom, box.x + box.w + 1:box.x + box.w + gap] > 0]
    mid = slice(box.y - top + box.h // 4, box.y - top + 3 * box.h // 4)
    # a table rule beside the box runs past it up and down; a letter does not
    return any(bool(s[mid][:, s.mean(axis=0) < 0.9].any()) for s in strips if s.size)


def run_checkbox(page: StageInput) -> dict[str, Any]:
    p = page.model("chk").runtime
    rotation = int(page.page.get("rotation", 0)) % 360
    h, w = page.image.shape[:2]
    width, height = (h, w) if rotation in (90, 270) else (w, h)
    lines = upright_lines(page)
    ink, rules = form_ink(page.image, p)  # rules beside a box are no letters' ink either
    threshold = float(p["ticked_fill"])
    out = []
    for box, fill in detect(ink, rules, p):
        if is_glyph(box, fill, ink, lines, p):
            continue
        corners = np.array([[box.x, box.y], [box.x + box.w, box.y],
                            [box.x + box.w, box.y + box.h], [box.x, box.y + box.h]], np.float64)
        label = label_of(box, lines, p)
        out.append({
            "polygon": np.round(to_upright(corners, rotation, width, height, back=True),
                                1).tolist(),
            "shape": box.shape, "ticked": fill >= threshold,
            "confidence": box.confidence,
            # how far the fill is from the threshold, 0.5 (on it) .. 1.0 (far)
            "ticked_confidence": round(0.5 + 0.5 * min(1.0, abs(fill - threshold) / threshold), 3),
            "fill": round(fill, 4),
            "label": label_text(box, label, p) if label else None,
            "label_order": label.order if label else None,
        })
    return {"boxes": out, "count": len(out), "ticked": sum(b["ticked"] for b in out)}


plugin = Plugin(
    name="ocrq-suite-checkbox",
    kinds=(params_model("chk", "checkbox/radio detector parameters (classic CV)",
                        PARAMS, PARAMS_SHA256, "checkbox.json"),),
    stages=(StageSpec("checkbox", run_checkbox, models=("chk",), hardware="cpu",
                      result_key="checkboxes"),),
)
