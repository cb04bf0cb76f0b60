"""ID cards (issue 13), as ocrq's own plug-in: model kind ``idd``, stage ``idcard``.

- Model kind ``idd``: the card finder's parameters, a JSON "weights" file made
  by code (suite/params.py) and pinned by its sha256. The classic CV of
  idcard_cv.py reads every number from it, and the candidate scorer's weights
  (``ranker``: a two-layer perceptron trained on generated cards by
  idcard_rank_train.py, stored in idcard_ranker.py) and the card segmenter's
  (``segnet``: a small CNN trained by idcard_seg_train.py, stored in
  idcard_segnet.json, run in ONNX Runtime on one thread) are part of it, so a
  better-tuned or retrained finder replaces it with ``ocrq models import idd FILE``.
- Stage ``idcard`` (result field ``card``): the card's quadrilateral on the
  image as submitted, a perspective-corrected crop of it, OCR of the crop
  (through the same engine) and the fields read from that (idcard_fields.py:
  name, dates, document number, the machine-readable zone with its check
  digits verified).

Tuned on generated cards (idcard_synth.py, seeds other than the evaluation's),
never on the real ID cards of the dev set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrq.plugins import ModelSpec, Plugin, StageInput, StageSpec
from ocrq.suite.checkbox import Line, to_upright, upright_lines
from ocrq.suite.idcard_cv import Quad
from ocrq.suite.idcard_fields import extract
from ocrq.suite.idcard_find import find_quad
from ocrq.suite.idcard_ranker import RANKER
from ocrq.suite.params import params_model

PARAMS: dict[str, Any] = {
    "format": "ocrq-idcard-cv/1",
    "work_side": 640,  # candidates are sought at this longest side (px)
    "refine_side": 1600,  # and the sides refined at this one
    "min_area": 0.04,  # share of the image a card covers, at least / at most
    "max_area": 0.98,
    "edge_quantiles": [0.8, 0.9],  # gradient quantiles whose closed maps give outlines
    "background_colours": 4,  # k-means colours of the image's border
    "background_distance": 18,  # Lab distance from all of them: not background
    "ratio_lo": 1.1,  # long/short side of a candidate, bounds
    "ratio_hi": 2.4,
    "aspect": 1.586,  # ISO/IEC 7810 ID-1; the prior falls off in log ratio
    "aspect_spread": 0.35,
    "area_power": 0.5,  # weight of a candidate's area in its score
    "samples": 40,  # points per side scored for edge support
    "corner_skip": 0.12,  # share of each side left out at its ends (rounded corners)
    "support_px": 3,  # an edge within this distance of the side supports it
    "strong_gradient": 20,  # Sobel of blurred Lab: what counts as an edge
    "min_support": 0.3,  # below this best score: no card
    "keep_share": 0.6,  # candidates scoring below this share of the best are dropped
    "snap_px": 5,  # each candidate's sides moved onto the nearby edge first
    "grow_share": 0.2,  # a side may move out by this share of the card's other side
    "grow_support": 0.6,  # to an edge along this share of its length
    "grow_top": 8,  # candidates tried grown
    "grow_to_aspect": 1.1,  # or as far as a card's proportions need, times this
    "strip_ratio": 3.2,  # and strips up to this long/short, if supported this well
    "strip_support": 0.7,
    "enclose_support": 0.9,  # a quad holding the winner, as well supported (share)
    "enclose_area": 1.4,  # and at most this much larger, is the card instead
    "outer_share": 0.5,  # refine: outermost edge at least this share of the strongest
    "refine_samples": 80,
    "refine_reach": [12, 4],  # px at refine_side, two passes
    "crop_width": [900, 1600],  # the crop's width is the card's, kept in these bounds
    # An image of card proportions whose read text lies largely outside the quad
    # found (or with none found) is taken to be the card itself, already cropped.
    "frame_ratio": [1.45, 1.75],
    "outside_text": 0.12,  # share of the page's characters
    "min_confidence": 0.4,  # a quad whose refined sides are supported less: the page
    "region_colours": 10,  # k-means colours of the whole image, one mask each
    "ranker_top": 40,  # candidates the learned scorer sees (idcard_rank.py)
    "ranker_dedupe_px": 3,  # at work_side: closer in every corner is the same quad
    "two_cards_margin": 2.5,  # a card this close in score, above or left of the best
    # The scorer's pick is vetoed when along a side its inside looks like the table
    # (Lab distance below table_step to a point outside) on this share of points,
    # for the next candidate within table_margin in score that does not.
    "table_step": 12,
    "table_share": 0.5,
    "table_margin": 1.0,
    # The segmenter's quad (idcard_seg.py): its sides moved onto the nearest edge
    # (these reaches, px at refine_side), then refined as any; it replaces the pick
    # when it matches the mask (IoU) seg_lead better than the pick and its sides'
    # support is at least seg_floor, or when that support is higher by seg_gain.
    # On the 480 tuning cards of seeds 1-6: lead 0.06-0.08 with floor 0.4-0.75, and
    # gain 0.02-0.05, did alike (idcard_find.learned).
    "seg_reach": [24, 8],
    "seg_lead": 0.08,
    "seg_floor": 0.6,
    "seg_gain": 0.05,
}
# The candidate scorer's weights (idcard_rank.py), trained by idcard_rank_train.py:
# a Python literal, so importing the plug-in reads no file.
PARAMS["ranker"] = RANKER
# The card segmenter's weights (idcard_seg.py), trained by idcard_seg_train.py: a
# JSON shipped beside this module (package data), 155 kB of base64, too long for
# a Python literal.
PARAMS["segnet"] = json.loads(Path(__file__).with_name("idcard_segnet.json").read_text(
    encoding="utf-8"))
PARAMS_SHA256 = "19eae82c3f76639021a02c5326a9f789c62f13404b0247d862e314eecfa995ab"


def crop_card(image: np.ndarray, corners: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """The card warped flat: as wide as its longer top/bottom side, within bounds."""
    tl, tr, br, bl = corners.astype(np.float64)
    w = max(np.hypot(*(tr - tl)), np.hypot(*(br - bl)))
    h = max(np.hypot(*(bl - tl)), np.hypot(*(br - tr)))
    lo, hi = p["crop_width"]
    scale = min(max(w, lo), hi) / max(w, 1.0)
    cw, ch = int(round(w * scale)), int(round(h * scale))
    dst = np.array([[0, 0], [cw - 1, 0], [cw - 1, ch - 1], [0, ch - 1]], np.float32)
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), dst)
    return cv2.warpPerspective(image, m, (cw, ch), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)


def _on_submitted(quad: Quad, page: StageInput) -> list[list[float]]:
    rotation = int(page.page.get("rotation", 0)) % 360
    h, w = page.image.shape[:2]
    width, height = (h, w) if rotation in (90, 270) else (w, h)
    pts = to_upright(quad.corners.astype(np.float64), rotation, width, height, back=True)
    return np.round(pts, 1).tolist()


def text_outside(quad: Quad, lines: list[Line]) -> float:
    """Share of the read characters whose line's centre lies outside ``quad``."""
    contour = quad.corners.astype(np.float32).reshape(-1, 1, 2)
    total = out = 0
    for ln in lines:
        n = len(ln.text.strip())
        total += n
        centre = ((ln.x0 + ln.x1) / 2, (ln.y0 + ln.y1) / 2)
        out += n if cv2.pointPolygonTest(contour, centre, False) < 0 else 0
    return out / total if total else 0.0


def card_quad(page: StageInput, p: dict[str, Any]) -> Quad | None:
    """The card found on the page, or the page itself when it is a card already
    cropped: card proportions, and no quad holding most of its text."""
    quad = find_quad(page.image, p)
    h, w = page.image.shape[:2]
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    if quad is not None and quad.confidence < float(p["min_confidence"]):
        # An outline this poorly supported is more often part of a letter or a
        # form than a card: the whole page is read, nothing cropped away.
        return Quad(frame, quad.confidence)
    lo, hi = p["frame_ratio"]
    if not lo <= max(h, w) / max(min(h, w), 1) <= hi:
        return quad
    if quad is None or text_outside(quad, upright_lines(page)) > float(p["outside_text"]):
        return Quad(frame, 0.5)  # no edge of its own to vouch for it
    return quad


def run_idcard(page: StageInput) -> dict[str, Any]:
    p = page.model("idd").runtime
    quad = card_quad(page, p)
    if quad is None:
        return {"found": False, "quad": None, "confidence": 0.0, "crop": None, "lines": [],
                "fields": extract([])}
    crop = crop_card(page.image, quad.corners, p)
    read = page.read(crop)
    lines = [{"text": ln.get("text", ""), "confidence": ln.get("confidence"),
              "polygon": ln.get("polygon")} for ln in read.get("lines", [])]
    return {"found": True, "quad": _on_submitted(quad, page), "confidence": quad.confidence,
            "crop": {"width": int(crop.shape[1]), "height": int(crop.shape[0])},
            "lines": lines, "text": "\n".join(str(ln["text"]) for ln in lines),
            "fields": extract(lines)}


def _kind() -> ModelSpec:
    spec = params_model("idd", "ID-card finder parameters (classic CV quad search)",
                        PARAMS, PARAMS_SHA256, "idcard.json")
    merge = spec.load
    assert merge is not None

    def load(path: Path) -> dict[str, Any]:
        # A version stored before the segmenter (no ``segnet`` in its file) finds
        # cards as it did: its other missing numbers are this ocrq's, but learned
        # weights it never had are not lent to it.
        stored = json.loads(path.read_text(encoding="utf-8"))
        loaded: dict[str, Any] = merge(path)
        return loaded if "segnet" in stored else {**loaded, "segnet": {}}

    return replace(spec, load=load)


plugin = Plugin(
    name="ocrq-suite-idcard",
    kinds=(_kind(),),
    stages=(StageSpec("idcard", run_idcard, models=("idd",), hardware="cpu",
                      result_key="card"),),
)
