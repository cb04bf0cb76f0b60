"""Which of the finder's candidate quads is the card: a small learned scorer (issue 13).

The classic search (idcard_cv.py) proposes quads with the edge support of each
side; a hand-written score (support x shape x area) lets a large clean rectangle
of background clutter, or a tile's edges, beat the card. Here each candidate is
described by a few numbers the card and its look-alikes differ in (support,
proportions, area, how busy its inside is against the ring around it, the colour
step across its sides, which other candidates it holds or is held by), and a
two-layer perceptron trained on generated cards (idcard_rank_train.py, fixed
seeds) scores them. Its weights are part of the ``idd`` model's parameters
(``ranker``), pinned by sha256 with every other number the finder reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ocrq.suite.idcard_grow import enclosing

log = logging.getLogger(__name__)

FEATURES = 30  # numbers per candidate (features()); a scorer is fitted for this many


@dataclass(frozen=True)
class Candidate:
    quad: np.ndarray  # 4 x 2 on the work copy, ordered clockwise from top-left
    sides: list[float]  # edge support per side, 0..1
    grown: bool  # a side moved out to the next edge beyond it



def distinct(found: list[Candidate], px: float, limit: int) -> list[Candidate]:
    """Best-supported first, near-copies (every corner within ``px``) dropped."""
    out: list[Candidate] = []
    for c in sorted(found, key=lambda c: -(np.mean(c.sides) + min(c.sides))):
        if all(np.abs(c.quad - o.quad).max() > px for o in out):
            out.append(c)
        if len(out) == limit:
            break
    return out


def _band(shape: tuple[int, int], quad: np.ndarray, width: float) -> tuple[np.ndarray, ...]:
    """Masks: inside the quad shrunk by ``width``, the band just inside the
    outline, and the band just outside it."""
    c = quad.mean(axis=0)
    outline = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(outline, np.round(quad).astype(np.int32), 1)
    inner = np.zeros(shape, np.uint8)
    span = np.hypot(*(quad - c).T)[:, None]
    cv2.fillConvexPoly(inner, np.round(c + (quad - c) * np.maximum(
        1 - width / np.maximum(span, 1), 0.05)).astype(np.int32), 1)
    outer = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(outer, np.round(c + (quad - c) * (1 + width / np.maximum(span, 1))
                                       ).astype(np.int32), 1)
    o, i, u = outline.astype(bool), inner.astype(bool), outer.astype(bool)
    return i, o & ~i, u & ~o


def _log_ratio(q: np.ndarray, p: Mapping[str, Any]) -> float:
    """log of (long / short side) over the card's aspect ratio."""
    sides = [float(np.hypot(*(q[(i + 1) % 4] - q[i]))) for i in range(4)]
    long, short = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
    return float(np.log(max(long, short) / max(min(long, short), 1.0) / float(p["aspect"])))


def _side_steps(q: np.ndarray, lab: np.ndarray, width: float) -> list[float]:
    """Per side, the median colour step between points just inside and just outside
    it: a side grown onto a tile's edge or a wave of the table has the table on
    both hands."""
    h, w = lab.shape[:2]
    c = q.mean(axis=0)
    out = []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        d = b - a
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
        n *= np.sign(float(np.dot(c - a, n)) + 1e-9)  # into the quad
        t = np.linspace(0.15, 0.85, 16)[:, None]
        pts = a + t * d

        def at(off: float, pts: np.ndarray = pts, n: np.ndarray = n) -> np.ndarray:
            x = np.clip(np.round(pts[:, 0] + off * n[0]).astype(int), 0, w - 1)
            y = np.clip(np.round(pts[:, 1] + off * n[1]).astype(int), 0, h - 1)
            return lab[y, x]

        inner = (at(0.5 * width) + at(width)) / 2
        outer = (at(-0.5 * width) + at(-width)) / 2
        out.append(float(np.median(np.linalg.norm(inner - outer, axis=1))) / 100)
    return out


def _inside_depth(quads: np.ndarray) -> np.ndarray:
    """[k, j]: how far inside quad k the least-inside corner of quad j lies (px,
    negative: outside), for convex quads in either winding."""
    a = quads  # k x 4 x 2
    d = np.roll(a, -1, axis=1) - a
    n = np.stack([-d[..., 1], d[..., 0]], axis=-1) / np.maximum(
        np.hypot(d[..., 0], d[..., 1]), 1e-6)[..., None]
    n *= np.sign(((a.mean(axis=1)[:, None, :] - a) * n).sum(-1, keepdims=True) + 1e-9)
    # side s of quad k against corner c of quad j
    rel = quads[None, None, :, :, :] - a[:, :, None, None, :]  # k x s x j x c x 2
    dist = (rel * n[:, :, None, None, :]).sum(-1)
    return dist.min(axis=(1, 3))


def features(found: list[Candidate], lab: np.ndarray, gx: np.ndarray, gy: np.ndarray,
             p: Mapping[str, Any]) -> np.ndarray:
    """One row of numbers per candidate (in the order given). The masks are drawn at
    half the work size: shares and means do not need more."""
    busy = (np.hypot(gx, gy) >= float(p["strong_gradient"]))[::2, ::2]
    labf = lab[::2, ::2].astype(np.float32)
    blur = cv2.GaussianBlur(labf, (0, 0), 1.5)
    h, w = busy.shape
    quads = np.stack([c.quad for c in found])
    areas = np.array([float(cv2.contourArea(q.astype(np.float32))) for q in quads])
    scores = np.array([0.5 * float(np.mean(c.sides)) + 0.5 * min(c.sides) for c in found])
    best = float(scores.max())
    depth = _inside_depth(quads)
    slack = 0.02 * np.sqrt(areas)
    good = scores[None, :] >= 0.8 * scores[:, None]  # [k, j]: j scores nearly as well as k
    np.fill_diagonal(good, False)
    holds_m = good & (depth >= -slack[:, None]) & (areas[None, :] < areas[:, None])
    within = depth.T  # [k, j]: how far k lies inside j
    held_m = good & (within >= -slack[:, None]) & (areas[None, :] > areas[:, None])
    holds = np.where(holds_m, areas[None, :] / areas[:, None], 0).max(axis=1)
    held = np.where(held_m, areas[:, None] / areas[None, :], 0).max(axis=1)
    # The hand-written rule's view (idcard_cv._by_rule): the scorer learns where it errs.
    z_all = np.array([_log_ratio(q, p) for q in quads])
    rule = scores * np.exp(-(z_all / float(p["aspect_spread"])) ** 2) * np.sqrt(
        areas / float(gx.shape[0] * gx.shape[1]))
    rule[scores < float(p["keep_share"]) * best] = 0.0
    top = int(np.argmax(rule))
    kept = [(float(scores[j]), quads[j]) for j in np.nonzero(rule > 0)[0]]
    chosen = enclosing(quads[top], float(scores[top]), kept, p)
    rows = []
    for k, c in enumerate(found):
        q, a = c.quad / 2, areas[k] / 4
        sides = [float(np.hypot(*(q[(i + 1) % 4] - q[i]))) for i in range(4)]
        long, short = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
        z = np.log(max(long, short) / max(min(long, short), 1.0) / float(p["aspect"]))
        inner, inside, outside = _band((h, w), q, max(2.0, 0.06 * np.sqrt(a)))
        dens = [float(busy[m].mean()) if m.any() else 0.0 for m in (inner, inside, outside)]
        step = (np.linalg.norm(labf[inside].mean(axis=0) - labf[outside].mean(axis=0))
                if inside.any() and outside.any() else 0.0)
        spread = [float(labf[m].std(axis=0).mean()) if m.any() else 0.0
                  for m in (inside, outside)]
        steps = sorted(_side_steps(q, blur, max(2.0, 0.04 * np.sqrt(a))))
        margin = min(float(q[:, 0].min()), float(q[:, 1].min()), w - 1 - float(q[:, 0].max()),
                     h - 1 - float(q[:, 1].max())) / max(h, w)
        rows.append([scores[k], scores[k] / max(best, 1e-6), *sorted(c.sides),
                     float(np.std(c.sides)), z * z, abs(z), a / (h * w),
                     np.log(a / (h * w)), float(c.grown), *dens, dens[0] - dens[2],
                     step / 100, spread[0] / 50, spread[1] / 50, holds[k], held[k],
                     float(holds[k] > 0), float(held[k] > 0), margin, k / len(found),
                     rule[k] / max(float(rule[top]), 1e-9), float(k == top),
                     float(np.array_equal(chosen, quads[k])), steps[0], steps[1]])
    return np.asarray(rows, np.float64)


def scores_of(x: np.ndarray, net: Mapping[str, Any]) -> np.ndarray:
    """The perceptron's score per row (higher: more like the card)."""
    z = (x - np.asarray(net["mean"])) / np.asarray(net["std"])
    hidden = np.maximum(z @ np.asarray(net["w1"]) + np.asarray(net["b1"]), 0.0)
    return hidden @ np.asarray(net["w2"]) + float(net["b2"])


def fits(net: Mapping[str, Any]) -> bool:
    """Whether ``net`` scores this code's features: parameters stored by an older
    ocrq (a repository's ``idd`` version made before features were added) carry a
    scorer for fewer numbers, and the finder then picks by its hand-written rule."""
    if not net:
        return False
    if len(net.get("mean", [])) == FEATURES:
        return True
    log.warning("idd scorer fitted for %d features, this finder has %d: rule used",
                len(net.get("mean", [])), FEATURES)
    return False


def shortlist(found: list[Candidate], p: Mapping[str, Any]) -> list[Candidate]:
    return distinct(found, float(p["ranker_dedupe_px"]), int(p["ranker_top"]))


def ranked(found: list[Candidate], lab: np.ndarray, gx: np.ndarray, gy: np.ndarray,
           p: Mapping[str, Any]) -> list[tuple[float, Candidate]]:
    """The shortlisted candidates with their learned score, best first."""
    short = shortlist(found, p)
    s = scores_of(features(short, lab, gx, gy, p), p["ranker"])
    return sorted(zip(s.tolist(), short, strict=True), key=lambda t: -t[0])


def _before(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether quad ``a`` comes before quad ``b`` in reading order: above it, or
    beside it on the left."""
    (ax, ay), by = a.mean(axis=0), float(b[:, 1].mean())
    if ay < float(b[:, 1].min()):
        return True
    return abs(ay - by) < 0.5 * float(np.ptp(b[:, 1])) and ax < float(b[:, 0].min())


def first_card(ranks: list[tuple[float, Candidate]], p: Mapping[str, Any]) -> Candidate:
    """The best candidate, or a card as good beside or above it: a page holding a
    card's two sides shows its front first (top, or left), and both score alike."""
    top_score, top = ranks[0]
    area = float(cv2.contourArea(top.quad.astype(np.float32)))
    pick = top
    for score, c in ranks[1:]:
        if score < top_score - float(p["two_cards_margin"]):
            break
        a = float(cv2.contourArea(c.quad.astype(np.float32)))
        shared, _ = cv2.intersectConvexConvex(c.quad.astype(np.float32),
                                              top.quad.astype(np.float32))
        if (0.8 * area <= a <= 1.25 * area and shared < 0.05 * min(a, area)
                and _before(c.quad, pick.quad)):
            pick = c
    return pick


def table_inside(q: np.ndarray, lab: np.ndarray, width: float, step: float) -> float:
    """The most, over the quad's sides, of the share of points just inside a side
    whose colour is within ``step`` of some point just outside any side: a side
    grown out onto the edge of a clutter shape or a tile holds a strip of table."""
    h, w = lab.shape[:2]
    c = q.mean(axis=0)
    inner, outer = [], []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        n = np.array([a[1] - b[1], b[0] - a[0]]) / max(float(np.hypot(*(b - a))), 1e-6)
        n *= np.sign(float(np.dot(c - a, n)) + 1e-9)  # into the quad
        pts = a + np.linspace(0.15, 0.85, 16)[:, None] * (b - a)

        def at(off: float, pts: np.ndarray = pts, n: np.ndarray = n) -> np.ndarray:
            x = np.clip(np.round(pts[:, 0] + off * n[0]).astype(int), 0, w - 1)
            y = np.clip(np.round(pts[:, 1] + off * n[1]).astype(int), 0, h - 1)
            return lab[y, x]

        inner.append((at(0.5 * width) + at(width)) / 2)
        outer.append((at(-0.5 * width) + at(-width)) / 2)
    ring = np.concatenate(outer)
    near = [np.linalg.norm(s[:, None, :] - ring[None, :, :], axis=2).min(axis=1) for s in inner]
    return max(float((d < step).mean()) for d in near)


def checked(ranks: list[tuple[float, Candidate]], lab: np.ndarray, p: Mapping[str, Any]
            ) -> list[tuple[float, Candidate]]:
    """The ranking with its winner vetoed when a side's inside looks like the table
    on at least ``table_share`` of its points and a candidate scoring within
    ``table_margin`` of it does not (then that one leads)."""
    blur = cv2.GaussianBlur(lab[::2, ::2].astype(np.float32), (0, 0), 1.5)

    def looks(c: Candidate) -> float:
        q = c.quad / 2
        a = float(cv2.contourArea(q.astype(np.float32)))
        return table_inside(q, blur, max(2.0, 0.04 * np.sqrt(a)), float(p["table_step"]))

    share = float(p["table_share"])
    if looks(ranks[0][1]) < share:
        return ranks
    for k, (score, c) in enumerate(ranks[1:6], start=1):
        if score < ranks[0][0] - float(p["table_margin"]):
            break
        if looks(c) < share:
            return [ranks[k]] + ranks[:k] + ranks[k + 1:]
    return ranks
