"""The card's quad on an image: the classic search, its pick, the segmenter's referee
(issue 13). See idcard_cv.py for the steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ocrq.suite.idcard_cv import (
    Quad,
    _colour_gradient,
    _scaled,
    _score,
    _shape_prior,
    refine,
    refined,
    search,
)
from ocrq.suite.idcard_grow import enclosing
from ocrq.suite.idcard_rank import Candidate, checked, first_card, fits, ranked
from ocrq.suite.idcard_seg import mask_quad, predict, unpack


def _by_rule(found: list[Candidate], best: float, shape: tuple[int, int],
             p: Mapping[str, Any]) -> np.ndarray:
    """Support, times how card-like the proportions are, times a little of the area:
    the card's outline beats its own photo box or title band, whose edges are as
    clean, and a large clean rectangle of another shape behind it."""
    scored = [(_score(c.sides), c.quad) for c in found]
    scored = [(s, q) for s, q in scored if s >= float(p["keep_share"]) * best]
    area = float(shape[0] * shape[1])
    top, quad = max(scored, key=lambda t: t[0] * _shape_prior(t[1], p) * (
        cv2.contourArea(t[1].astype(np.float32)) / area) ** float(p["area_power"]))
    return enclosing(quad, top, scored, p)


def find_quad(image: np.ndarray, p: Mapping[str, Any]) -> Quad | None:
    """The card's corners on ``image`` (BGR), or None when no outline holds up."""
    small, scale = _scaled(image, int(p["work_side"]))
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB)
    gx, gy = _colour_gradient(lab)
    found = search(lab, gx, gy, p)
    best = max((_score(c.sides) for c in found), default=0.0)
    if best < float(p["min_support"]):
        return None
    if fits(p.get("ranker") or {}):
        ranks = checked(ranked(found, lab, gx, gy, p), lab, p)
        pick = first_card(ranks, p)
        session = unpack(p.get("segnet") or {})
        if session is not None and pick is ranks[0][1]:
            # (A card's two sides on one page, first_card's pick: the mask holds both.)
            return learned(image, pick.quad, predict(image, session), scale, p)
        quad = pick.quad
    else:
        quad = _by_rule(found, best, gx.shape, p)
    return finish(image, quad, scale, p)


def agreement(quad: np.ndarray, prob: np.ndarray, shape: tuple[int, int]) -> float:
    """How much ``quad`` (on an image of ``shape``) is the card the segmenter sees: its
    intersection over union with the mask (prob > 0.5), on a square of twice the
    mask's side."""
    side = 2 * prob.shape[0]
    h, w = shape
    pts = (quad + 0.5) * np.array([side / w, side / h]) - 0.5
    drawn = np.zeros((side, side), np.uint8)
    cv2.fillPoly(drawn, [np.round(pts * 8).astype(np.int32).reshape(-1, 1, 2)], 1, shift=3)
    mask = cv2.resize(prob, (side, side), interpolation=cv2.INTER_LINEAR) > 0.5
    union = int((mask | (drawn > 0)).sum())
    return int((mask & (drawn > 0)).sum()) / union if union else 0.0


def learned(image: np.ndarray, quad: np.ndarray, prob: np.ndarray, scale: float,
            p: Mapping[str, Any]) -> Quad:
    """The classic pick (on the work copy) and the quad of the segmenter's mask, each
    refined; the mask referees. The classic pick wins unless the mask's quad matches
    the mask ``seg_lead`` better (and its refined sides hold ``seg_floor`` support), or
    its sides hold ``seg_gain`` more support: a wrong pick (a side on a clutter
    rectangle's or a tile's straight edge, a card merged with one) can have sides as
    well supported as the card's, but it is not the region the network sees."""
    bgx, bgy, big_scale = _refine_copy(image, p)
    mine = refined(quad * (big_scale / scale), bgx, bgy, big_scale, p)
    own = mask_quad(prob, image.shape[:2])
    if own is None:
        return mine
    # The mask's sides are near the card's (within a few of its pixels): each is moved
    # onto the edge nearest it, not the outermost in reach, then refined as usual.
    q = own * big_scale
    for reach in p["seg_reach"]:
        q = refine(q, bgx, bgy, int(reach), p, nearest=True)
    theirs = refined(q, bgx, bgy, big_scale, {**p, "refine_reach": p["refine_reach"][-1:]})
    shape = image.shape[:2]
    lead = agreement(theirs.corners, prob, shape) - agreement(mine.corners, prob, shape)
    if lead >= float(p["seg_lead"]) and theirs.confidence >= float(p["seg_floor"]):
        return theirs
    return theirs if theirs.confidence >= mine.confidence + float(p["seg_gain"]) else mine


def finish(image: np.ndarray, quad: np.ndarray, scale: float, p: Mapping[str, Any]) -> Quad:
    """The chosen quad's sides refined on the larger copy; confidence is their support."""
    bgx, bgy, big_scale = _refine_copy(image, p)
    return refined(quad * (big_scale / scale), bgx, bgy, big_scale, p)


def _refine_copy(image: np.ndarray, p: Mapping[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """The colour gradients of the copy sides are refined on (``refine_side`` px), and
    its scale."""
    big, big_scale = _scaled(image, int(p["refine_side"]))
    bgx, bgy = _colour_gradient(cv2.cvtColor(big, cv2.COLOR_BGR2LAB))
    return bgx, bgy, big_scale


