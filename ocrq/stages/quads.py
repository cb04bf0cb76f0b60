"""Quadrilaterals of text lines (4 x 2 float32 points): their order and sides.

Apart from stages/detect.py so that what detection itself uses (ink_look.py)
measures its boxes with the same functions.
"""

from __future__ import annotations

import numpy as np


def order_quad(pts: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise from top-left (of the text, for near-horizontal lines)."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], np.float32)


def quad_width(q: np.ndarray) -> float:
    return float(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2])))


def quad_height(q: np.ndarray) -> float:
    return float(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
