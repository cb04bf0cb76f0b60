"""Growing a card's quad to its true outline, and the geometry that needs (issue 13).

A card's body can be found without its title band (a band the colour of the
table) or its zone strip: each side is tried moved out to the next straight
edge beyond it, and a well-supported quad that holds the winner and is not
much larger replaces it. Split from idcard_cv.py, which calls these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np


def side_points(a: np.ndarray, b: np.ndarray, n: int, skip: float) -> np.ndarray:
    t = np.linspace(skip, 1 - skip, n)[:, None]
    return a * (1 - t) + b * t


def enclosing(quad: np.ndarray, score: float, scored: list[tuple[float, np.ndarray]],
              p: Mapping[str, Any]) -> np.ndarray:
    """The largest well-supported quad that holds ``quad`` and is not much larger: a
    card's outline is the outermost closed edge around its print, and its body
    without a title band (or without the zone's strip) scores as well."""
    own = cv2.contourArea(quad.astype(np.float32))
    best, best_area = quad, own
    for s, q in scored:
        a = cv2.contourArea(q.astype(np.float32))
        if not (s >= float(p["enclose_support"]) * score and best_area < a
                <= float(p["enclose_area"]) * own):
            continue
        contour = q.astype(np.float32).reshape(-1, 1, 2)
        slack = -0.02 * float(np.sqrt(own))  # shared sides are found a little apart
        if all(cv2.pointPolygonTest(contour, (float(x), float(y)), True) >= slack
               for x, y in quad):
            best, best_area = q, a
    return best


def lines_of(quad: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(quad[i], quad[(i + 1) % 4] - quad[i]) for i in range(4)]


def corners_of(lines: list[tuple[np.ndarray, np.ndarray]], fallback: np.ndarray
                ) -> np.ndarray:
    """Corner i where side i-1 meets side i (lines as point + direction)."""
    out = []
    for i in range(4):
        (p0, d0), (p1, d1) = lines[i - 1], lines[i]
        m = np.array([d0, -d1]).T
        if abs(np.linalg.det(m)) < 1e-9:
            out.append(fallback[i])
            continue
        t = np.linalg.solve(m, p1 - p0)
        out.append(p0 + t[0] * d0)
    return np.array(out)


def outer_lines(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray, p: Mapping[str, Any]
                ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per side, the next straight edge outwards (point, direction), or None: a title
    band the colour of the table leaves the body's edge as the outline, and the
    card's own edge lies a band's height further out. Sought point by point (the
    two edges are not quite parallel in a perspective view), then fitted."""
    h, w = gx.shape
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for i, (a, d) in enumerate(lines_of(quad)):
        normal = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)  # into the quad
        across = float(np.hypot(*(quad[(i + 2) % 4] - quad[(i + 1) % 4])))
        along = float(np.hypot(*d))
        # A quad too narrow for a card's proportions may lack a band this wide: the
        # side may move out as far as the card's shape allows.
        missing = along / float(p["aspect"]) - across
        reach = int(max(float(p["grow_share"]) * across, float(p["grow_to_aspect"]) * missing))
        pts = side_points(a, a + d, int(p["samples"]), float(p["corner_skip"]))
        offs = np.arange(3, max(reach, 4))
        q = pts[:, None, :] - offs[None, :, None] * normal[None, None, :]
        inside = ((q[..., 0] >= 0) & (q[..., 0] < w) & (q[..., 1] >= 0)
                  & (q[..., 1] < h)).all(axis=1)
        qx = np.clip(np.round(q[..., 0]).astype(int), 0, w - 1)
        qy = np.clip(np.round(q[..., 1]).astype(int), 0, h - 1)
        strong = np.abs(gx[qy, qx] * normal[0] + gy[qy, qx] * normal[1]) >= float(
            p["strong_gradient"])
        strong &= inside[:, None]
        # The offset most points see an edge near (within 3 px: the two edges are not
        # quite parallel), the farthest of the nearly-best: a straight edge along the
        # side, not the title's letters or a wavy table.
        near = np.stack([strong[:, max(0, k - 3):k + 4].any(axis=1)
                         for k in range(len(offs))], axis=1)
        counts = near.sum(axis=0)
        if counts.max(initial=0) < float(p["grow_support"]) * len(pts):
            out.append(None)
            continue
        k = int(np.nonzero(counts >= 0.9 * counts.max())[0].max())
        has = near[:, k]
        band = np.abs(offs[None, :] - offs[k]) <= 3
        pick = np.where(strong[has] & band[0], offs[None, :], 10**6)
        found = pts[has] - pick.min(axis=1)[:, None] * normal[None, :]
        vx, vy, x0, y0 = cv2.fitLine(found.astype(np.float32), cv2.DIST_HUBER, 0, 0.01,
                                     0.01).ravel()
        out.append((np.array([x0, y0], np.float64), np.array([vx, vy], np.float64)))
    return out


def grown(quad: np.ndarray, gx: np.ndarray, gy: np.ndarray, p: Mapping[str, Any]
          ) -> list[np.ndarray]:
    """The quad with each side, and each pair of opposite sides, moved out to the
    next edge beyond it."""
    outer = outer_lines(quad, gx, gy, p)
    lines = lines_of(quad)
    picks = [[i] for i in range(4)] + [[0, 2], [1, 3]]
    out = []
    for pick in picks:
        if any(outer[i] is None for i in pick):
            continue
        moved = [outer[i] if i in pick else lines[i] for i in range(4)]
        out.append(corners_of(moved, quad))  # type: ignore[arg-type]
    return out
