"""Polygon geometry for scoring: rasterised areas and overlaps, reading axes.

Polygons are rasterised with ``cv2.fillPoly`` on the image grid, downscaled for
pages larger than ``MAX_MASK_SIDE`` (areas are compared as ratios, so a uniform
downscale keeps them). Detection recall (``metrics.box_coverage``) and the
pairing of ground-truth boxes with predicted lines (``confusions``) share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Polygon = Sequence[Sequence[float]]

# Masks for huge page scans are rasterised on a grid whose longer side is at most
# this many cells; coverage is a ratio of areas, so a uniform downscale keeps it.
MAX_MASK_SIDE = 4096

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive) on the grid


@dataclass(frozen=True)
class Grid:
    """The raster a page's polygons are filled on."""

    scale: float
    width: int
    height: int

    @classmethod
    def of(cls, width: int, height: int) -> Grid:
        scale = min(1.0, MAX_MASK_SIDE / max(width, height, 1))
        return cls(scale, max(1, round(width * scale)), max(1, round(height * scale)))

    def pixels(self, poly: Polygon) -> np.ndarray:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) * self.scale
        return np.round(pts).astype(np.int32)

    def window(self, pts: np.ndarray) -> Window:
        """The polygon's bounding box, clipped to the grid."""
        x0, y0 = np.clip(pts.min(axis=0), 0, [self.width - 1, self.height - 1])
        x1, y1 = np.clip(pts.max(axis=0), 0, [self.width - 1, self.height - 1])
        return int(x0), int(y0), int(x1), int(y1)

    @staticmethod
    def mask(pts: np.ndarray, window: Window) -> np.ndarray:
        """The polygon filled in ``window`` (parts outside it are cut off)."""
        x0, y0, x1, y1 = window
        local = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
        cv2.fillPoly(local, [pts - [x0, y0]], 1)
        return local


def _intersect(a: Window, b: Window) -> Window | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


def overlap_areas(
    truth: Sequence[Polygon], predicted: Sequence[Polygon], grid: Grid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-cell areas: ``inter[t, p]`` of each pair, and of each truth and predicted polygon.

    Predicted polygons with fewer than 3 points have no area.
    """
    t_pts = [grid.pixels(b) for b in truth]
    p_pts = [grid.pixels(p) if len(p) >= 3 else None for p in predicted]
    p_win = [grid.window(p) if p is not None else None for p in p_pts]
    area_p = np.array([
        int(grid.mask(p, w).sum()) if p is not None and w is not None else 0
        for p, w in zip(p_pts, p_win, strict=True)
    ], dtype=np.int64)
    area_t = np.zeros(len(t_pts), dtype=np.int64)
    inter = np.zeros((len(t_pts), len(p_pts)), dtype=np.int64)
    for t, pts in enumerate(t_pts):
        win = grid.window(pts)
        local = grid.mask(pts, win)
        area_t[t] = int(local.sum())
        for p, (ppts, pwin) in enumerate(zip(p_pts, p_win, strict=True)):
            both = _intersect(win, pwin) if ppts is not None and pwin is not None else None
            if both is None or area_p[p] == 0:
                continue
            x0, y0, x1, y1 = both
            part = local[y0 - win[1] : y1 - win[1] + 1, x0 - win[0] : x1 - win[0] + 1]
            inter[t, p] = int((part & grid.mask(ppts, both)).sum())
    return inter, area_t, area_p


def reading_axis(poly: Polygon) -> np.ndarray:
    """Unit vector along the text: first point to second (clockwise from the text's
    top-left, as every engine here returns them); horizontal when degenerate."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if len(pts) >= 2:
        d = pts[1] - pts[0]
        norm = float(np.hypot(*d))
        if norm > 0:
            return d / norm
    return np.array([1.0, 0.0])


def extent(poly: Polygon, axis: np.ndarray) -> tuple[float, float]:
    """Smallest and largest projection of the polygon's points on ``axis``."""
    proj = np.asarray(poly, dtype=np.float64).reshape(-1, 2) @ axis
    return float(proj.min()), float(proj.max())


def across(poly: Polygon, axis: np.ndarray) -> float:
    """The polygon's size across the text (perpendicular to ``axis``): its height."""
    lo, hi = extent(poly, np.array([-axis[1], axis[0]]))
    return hi - lo
