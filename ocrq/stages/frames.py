"""The frames a page is read in, and the way back to the image as submitted.

submitted --(turned clockwise by ``rotation``, a multiple of 90°: lossless)-->
upright --(turned by ``-skew`` onto an enlarged canvas: stages/deskew.py)-->
straightened. Detection reports polygons on the whole straightened page (it
reads only the part around the text and shifts them), or on the upright page
when ``skew`` is 0; recognition crops them from that page, and the result maps
them back onto the submitted image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ocrq.stages.deskew import straighten, to_upright
from ocrq.stages.recognize import crop_lines

Quad = list[list[float]]  # four [x, y] points, clockwise from the text's top-left


def line_crops(upright: np.ndarray, polygons: Sequence[np.ndarray] | Sequence[Quad],
               skew: float) -> list[np.ndarray]:
    """The lines' crops; ``polygons`` are on the upright page straightened by ``skew``.

    The whole straightened page is rebuilt (not only the part step_detect cut
    around the text): its pixels depend on the page and the angle alone, so a
    line reads the same in whichever recognition batch it travels.
    """
    page = straighten(upright, skew).image if skew else upright
    return crop_lines(page, [np.asarray(p, np.float32) for p in polygons])


def to_submitted(q: np.ndarray, rotation: int, skew: float, width: int, height: int
                 ) -> np.ndarray:
    """Map points from the page step_detect read back onto the submitted image
    (``width`` x ``height``): the skew undone, then the quarter turn."""
    uw, uh = (height, width) if rotation % 180 == 90 else (width, height)
    return to_original(to_upright(q, skew, uw, uh), rotation, uw, uh)


def to_original(q: np.ndarray, rotation: int, uw: int, uh: int) -> np.ndarray:
    """Map points from the upright frame (size uw x uh) back to the submitted image.

    The upright image is the submitted one turned clockwise by ``rotation``.
    """
    p = np.asarray(q, np.float32).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    rotation %= 360
    if rotation == 0:
        return p.copy()
    if rotation == 90:  # submitted (x, y) -> upright (H-1-y, x); H = uw
        return np.stack([y, uw - 1 - x], axis=1)
    if rotation == 180:
        return np.stack([uw - 1 - x, uh - 1 - y], axis=1)
    # 270: submitted (x, y) -> upright (y, W-1-x); W = uh
    return np.stack([uh - 1 - y, x], axis=1)
