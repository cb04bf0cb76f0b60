"""Finding a card's quadrilateral on a photo or scan: classic CV (issue 13).

1. Candidates, on a copy at ``work_side`` px: outlines of closed edge maps
   (colour gradient), of the not-background mask, of each k-means colour of the
   image and of Otsu masks of several channels, each reduced to four corners
   (convex hull -> polygon, else its rotated rectangle), snapped to the edges
   near them.
2. Each candidate is scored by edge support: the share of points along its
   sides (corners left out: cards have rounded corners) with a strong gradient
   across the side. The best distinct quads, and strips too long for a card (its
   ground between a title band and a zone's strip the colour of the table), are
   also tried with sides grown out to the next straight edge (idcard_grow.py).
3. One candidate is picked: by a small learned scorer when the parameters carry
   one (``ranker``, idcard_rank.py; its pick vetoed when the inside along a side
   looks like the table; of a card's two sides on one page, the one first in
   reading order), else by the hand-written rule (support x shape x
   area, then the largest well-supported quad holding the winner). With a
   segmenter in the parameters (``segnet``, idcard_seg.py), the quad of the
   card mask it predicts is refined too, and the mask referees between the two
   (idcard_find.py, which runs these steps: ``find_quad``).
4. The winner's sides are refined on a larger copy (``refine_side`` px): along
   each side the strongest gradient across it is sought near the line, and a
   line is fitted (Huber) to those points; the corners are where the lines
   meet, i.e. the corners of the card rectangle, not of its rounded outline.

Every number comes from the ``idd`` model's parameters (ocrq/suite/idcard.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ocrq.suite.idcard_grow import corners_of, grown, side_points
from ocrq.suite.idcard_rank import Candidate, distinct


@dataclass(frozen=True)
class Quad:
    corners: np.ndarray  # 4 x 2 float, clockwise from top-left, on the image given
    confidence: float  # edge support of the refined sides, 0..1


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Clockwise (in image coordinates) from the corner nearest the top-left."""
    c = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(ang)]
    start = int(np.argmin(pts.sum(axis=1)))
    return np.roll(pts, -start, axis=0)


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return gx, gy


def _colour_gradient(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of the Lab channel that changes most at each pixel: an edge
    between two colours of equal brightness still counts."""
    best_x = best_y = best = None
    for ch in cv2.split(lab):
        gx, gy = _gradients(cv2.GaussianBlur(ch.astype(np.float32), (0, 0), 1.2))
        mag = gx * gx + gy * gy
        if best is None:
            best_x, best_y, best = gx, gy, mag
        else:
            take = mag > best
            best_x, best_y, best = (np.where(take, gx, best_x), np.where(take, gy, best_y),
                                    np.maximum(mag, best))
    assert best_x is not None and best_y is not None
    return best_x, best_y


def _quads_of(mask: np.ndarray, min_area: float) -> Iterator[np.ndarray]:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        if cv2.contourArea(c) < min_area:
            continue
        hull = cv2.convexHull(c)
        peri = cv2.arcLength(hull, True)
        for eps in (0.02, 0.04, 0.06):
            approx = cv2.approxPolyDP(hull, eps * peri, True)
            if len(approx) == 4:
                yield approx.reshape(4, 2).astype(np.float64)
                break
        yield cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float64)


def not_background(lab: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Pixels unlike every colour of the image's border (k-means of the border: a
    table, a wood grain or a scanner lid has a few colours, and the card rarely
    touches all four edges)."""
    h, w = lab.shape[:2]
    m = max(2, int(0.03 * min(h, w)))
    border = np.concatenate([lab[:m].reshape(-1, 3), lab[-m:].reshape(-1, 3),
                             lab[:, :m].reshape(-1, 3), lab[:, -m:].reshape(-1, 3)])
    k = int(p["background_colours"])
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    # A fixed first guess (PP centres, one attempt): the same image gives the same mask.
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(border.astype(np.float32), k, None, crit, 1,
                               cv2.KMEANS_PP_CENTERS)
    flat = lab.reshape(-1, 3).astype(np.float32)
    dist = np.min(np.linalg.norm(flat[:, None, :] - centres[None, :, :], axis=2), axis=1)
    far = dist.reshape(h, w) > float(p["background_distance"])
    return far.astype(np.uint8) * 255


def colour_regions(lab: np.ndarray, k: int) -> list[np.ndarray]:
    """One mask per k-means colour of the image: a card lying across several shapes
    of background clutter merges with them in every edge map and Otsu mask, but its
    ground is a colour of its own."""
    if k < 2:
        return []
    sample = lab[::4, ::4].reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)  # the same image gives the same regions
    _, _, centres = cv2.kmeans(sample, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    flat = lab.reshape(-1, 3).astype(np.float32)
    # |x - c|^2 without the |x|^2 every centre shares: one product, not k copies.
    label = np.argmin((centres * centres).sum(axis=1) - 2 * flat @ centres.T, axis=1)
    label = label.reshape(lab.shape[:2])
    return [(label == i).astype(np.uint8) * 255 for i in range(k)]


def candidates(lab: np.ndarray, mag: np.ndarray, p: Mapping[str, Any]) -> list[np.ndarray]:
    h, w = mag.shape
    min_area = float(p["min_area"]) * h * w
    out: list[np.ndarray] = []
    k = np.ones((5, 5), np.uint8)
    # Opened wide enough to cut thin things touching the card (lines, edges of
    # papers), then closed to fill what the card's print leaves out.
    fg = cv2.morphologyEx(not_background(cv2.GaussianBlur(lab, (0, 0), 1.5), p),
                          cv2.MORPH_OPEN, np.ones((11, 11), np.uint8))
    out += _quads_of(cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8)),
                     min_area)
    for q in p["edge_quantiles"]:
        edges = (mag > np.quantile(mag, q)).astype(np.uint8) * 255
        out += _quads_of(cv2.morphologyEx(edges, cv2.MORPH_CLOSE, k), min_area)
    for mask in colour_regions(cv2.GaussianBlur(lab, (0, 0), 2), int(p["region_colours"])):
        out += _quads_of(cv2.morphologyEx(mask, cv2.MORPH_OPEN, k), min_area)
    for ch in cv2.split(lab):
        blur = cv2.GaussianBlur(ch, (0, 0), 2)
        _, otsu = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        for mask in (otsu, 255 - otsu):
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k)
            out += _quads_of(mask, min_area)
    return out


def support(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray, p: Mapping[str, Any]
            ) -> list[float]:
    """Per side: share of sample points with a strong gradient across the side
    within ``support_px`` of it."""
    h, w = gx.shape
    strong = float(p["strong_gradient"])
    reach = int(p["support_px"])
    out = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        d = b - a
        length = float(np.hypot(*d))
        if length < 8:
            return [0.0] * 4
        normal = np.array([-d[1], d[0]]) / length
        pts = side_points(a, b, int(p["samples"]), float(p["corner_skip"]))
        # Counted per sign: one object's edge against a table goes one way along
        # its whole length (light to dark, say); a row of tiles or a checkerboard
        # flips from tile to tile.
        rise, fall = np.zeros(len(pts), bool), np.zeros(len(pts), bool)
        for s in range(-reach, reach + 1):
            q = np.round(pts + s * normal).astype(int)
            ok = (q[:, 0] >= 0) & (q[:, 0] < w) & (q[:, 1] >= 0) & (q[:, 1] < h)
            qx, qy = np.clip(q[:, 0], 0, w - 1), np.clip(q[:, 1], 0, h - 1)
            sx, sy = gx[qy, qx], gy[qy, qx]
            across = sx * normal[0] + sy * normal[1]
            edge = ok & (np.abs(across) >= strong) & (np.abs(across) >= 0.7 * np.hypot(sx, sy))
            rise |= edge & (across > 0)
            fall |= edge & (across < 0)
        out.append(float(max(rise.mean(), fall.mean())))
    return out


def _plausible(quad: np.ndarray, shape: tuple[int, int], p: Mapping[str, Any]) -> bool:
    if not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
        return False
    sides = [float(np.hypot(*(quad[(i + 1) % 4] - quad[i]))) for i in range(4)]
    long, short = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
    ratio = max(long, short) / max(min(long, short), 1.0)
    area = cv2.contourArea(quad.astype(np.float32))
    return (float(p["ratio_lo"]) <= ratio <= float(p["ratio_hi"])
            and area <= float(p["max_area"]) * shape[0] * shape[1])


def _shape_prior(quad: np.ndarray, p: Mapping[str, Any]) -> float:
    """1 at the card's aspect ratio (ISO/IEC 7810 ID-1: 1.586), falling off in log ratio.
    The ratio of mean opposite sides: a perspective-corrected estimate (focal length
    from the quad) scattered more on generated cards."""
    sides = [float(np.hypot(*(quad[(i + 1) % 4] - quad[i]))) for i in range(4)]
    long, short = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
    ratio = max(long, short) / max(min(long, short), 1.0)
    z = np.log(ratio / float(p["aspect"])) / float(p["aspect_spread"])
    return float(np.exp(-z * z))


def refine(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray, reach: int,
           p: Mapping[str, Any], nearest: bool = False) -> np.ndarray:
    """Each side moved onto the outermost strong gradient across it nearby (or, with
    ``nearest``, the strong ridge nearest to it), then the corners recomputed where
    the fitted lines meet."""
    h, w = gx.shape
    lines = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        d = b - a
        normal = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
        pts = side_points(a, b, int(p["refine_samples"]), float(p["corner_skip"]))
        offs = np.arange(-reach, reach + 1)
        q = pts[:, None, :] + offs[None, :, None] * normal[None, None, :]
        qx = np.clip(np.round(q[..., 0]).astype(int), 0, w - 1)
        qy = np.clip(np.round(q[..., 1]).astype(int), 0, h - 1)
        across = np.abs(gx[qy, qx] * normal[0] + gy[qy, qx] * normal[1])
        if nearest:
            best, keep = _nearest_ridge(across, offs, float(p["strong_gradient"]))
        else:
            # The outermost strong edge, not the strongest: the normal points into the
            # quad, and a card's dark title band or photo meets its ground with a harder
            # edge than the card meets the table.
            top = across.max(axis=1, keepdims=True)
            best = (across >= float(p["outer_share"]) * top).argmax(axis=1)
            keep = top[:, 0] >= float(p["strong_gradient"])
        found = pts + offs[best][:, None] * normal[None, :]
        if keep.sum() < 5:
            lines.append((a, d / max(float(np.hypot(*d)), 1e-6)))
            continue
        vx, vy, x0, y0 = cv2.fitLine(found[keep].astype(np.float32), cv2.DIST_HUBER, 0,
                                     0.01, 0.01).ravel()
        lines.append((np.array([x0, y0], np.float64), np.array([vx, vy], np.float64)))
    return corners_of(lines, quad)


def _nearest_ridge(across: np.ndarray, offs: np.ndarray, strong: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per point (row), the index of the strong local maximum nearest offset 0: a
    side placed by the segmenter is near the card's edge, and the outermost edge
    in reach can be the table's."""
    pad = np.pad(across, ((0, 0), (1, 1)))
    ridge = (across >= strong) & (across >= pad[:, :-2]) & (across >= pad[:, 2:])
    dist = np.where(ridge, np.abs(offs)[None, :], np.iinfo(np.int64).max)
    return dist.argmin(axis=1), ridge.any(axis=1)


def _scaled(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, side / max(image.shape[:2]))
    if scale == 1.0:
        return image, 1.0
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def _score(sides: list[float]) -> float:
    return 0.5 * float(np.mean(sides)) + 0.5 * min(sides)


def search(lab: np.ndarray, gx: np.ndarray, gy: np.ndarray, p: Mapping[str, Any]
           ) -> list[Candidate]:
    """Every plausible quad on the work copy, snapped to its edges, with its sides'
    support; the best ``grow_top`` also tried grown out to the next edge, and so
    are well-supported strips too long for a card (a card's ground between its
    title band and its zone's strip, both the colour of what lies around it)."""
    mag = np.hypot(gx, gy)
    found: list[Candidate] = []
    strips: list[Candidate] = []
    for quad in candidates(lab, mag, p):
        quad = order_corners(refine(order_corners(quad), gx, gy, int(p["snap_px"]), p))
        if _plausible(quad, mag.shape, p):
            found.append(Candidate(quad, support(quad, gx, gy, p), False))
        elif _plausible(quad, mag.shape, {**p, "ratio_hi": p["strip_ratio"]}):
            strips.append(Candidate(quad, support(quad, gx, gy, p), False))
    # The best distinct quads: near-copies of one outline (a photo box found by every
    # mask) would fill the list and leave the card's body ungrown.
    best = distinct(found, float(p["ranker_dedupe_px"]), int(p["grow_top"]))
    strips = [c for c in strips if _score(c.sides) >= float(p["strip_support"])]
    for c in best + strips:
        for big in grown(c.quad, gx, gy, p):
            big = order_corners(big)
            if _plausible(big, mag.shape, p):
                found.append(Candidate(big, support(big, gx, gy, p), True))
    return found


def refined(quad: np.ndarray, bgx: np.ndarray, bgy: np.ndarray, big_scale: float,
            p: Mapping[str, Any]) -> Quad:
    for reach in p["refine_reach"]:
        quad = refine(quad, bgx, bgy, int(reach), p)
    quad = order_corners(quad)
    conf = support(quad, bgx, bgy, {**p, "support_px": 2})
    return Quad(quad / big_scale, round(_score(conf), 3))
