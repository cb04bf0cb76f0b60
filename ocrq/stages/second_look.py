"""The second look at what DB scores low: weak candidates (stages/detect.py)
kept only where recognition reads them well enough.

DB's kernel of a thin glyph is a sliver, and its unclipped box cuts the glyph
("1" read from the middle of its stroke), so each candidate is first grown to
the page's line height, about a character cell wide. It is then kept when the
recogniser is sure of it, or fairly sure and it sits on the row of a line
found outright (a quantity beside its item, the colon of "key : value") and
reads as a letter, digit or colon: not as what a speck or a rule's end reads
as.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ocrq.models.states import LoadedModel
from ocrq.stages.detect import Region
from ocrq.stages.frames import line_crops
from ocrq.stages.quads import quad_height, quad_width
from ocrq.stages.recognize import RecognizeOptions, recognize


@dataclass(frozen=True)
class WeakRules:
    min_confidence: float  # kept anywhere from this
    row_min_confidence: float  # kept on a line's row from this
    min_aspect: float  # grown to at least this share of the line height wide (0: as boxed)
    # A colon on a line's row from this: its shape (two dots, one above the other)
    # is most of the evidence, and a colon alone in its crop, with no text beside
    # it, is what the recogniser is least sure of ("key : value" set apart).
    colon_min_confidence: float = 0.35


def confirm(upright: np.ndarray, regions: list[Region], polygons: list[np.ndarray],
            votes: list[tuple[bool, float]], skew: float, model: LoadedModel,
            read_opts: RecognizeOptions, rules: WeakRules,
            ) -> tuple[list[Region], list[np.ndarray], list[tuple[bool, float]]]:
    """The regions (and their polygons and votes) without the weak ones not kept;
    kept ones carry their grown box."""
    weak = [i for i, r in enumerate(regions) if r.weak]
    if not weak:
        return regions, polygons, votes
    heights = [quad_height(r.polygon) for r in regions if not r.weak]
    if heights and rules.min_aspect:
        line_h = float(np.median(heights))
        grown = {i: grow_to_line(regions[i].polygon, line_h, rules.min_aspect) for i in weak}
        on_page = grown
        if not skew:  # on the upright page: inside it, as detect() leaves boxes
            h, w = upright.shape[:2]
            grown = on_page = {i: np.clip(q, 0, [w - 1, h - 1]).astype(np.float32)
                               for i, q in grown.items()}
        else:  # ``polygons`` lie on the straightened cut, the regions on the upright page
            on_page = {i: grow_to_line(np.asarray(polygons[i], np.float32), line_h,
                                       rules.min_aspect) for i in weak}
        regions = [replace(r, polygon=grown[i]) if i in grown else r
                   for i, r in enumerate(regions)]
        polygons = [on_page.get(i, p) for i, p in enumerate(polygons)]
    crops = line_crops(upright, [regions[i].polygon for i in weak], skew)
    # The network's own reading: no lexicon.
    read = recognize(model, crops, replace(read_opts, languages=()))
    rows = [(float(r.polygon[:, 1].min()), float(r.polygon[:, 1].max()))
            for r in regions if not r.weak]
    keep_weak = {i for i, r in zip(weak, read, strict=True)
                 if r.text.strip() and (
                     r.confidence >= rules.min_confidence
                     or (r.confidence >= _row_floor(r.text, rules)
                         and glyph_like(r.text) and on_a_row(regions[i].polygon, rows)))}
    keep = [i for i in range(len(regions)) if not regions[i].weak or i in keep_weak]
    return ([regions[i] for i in keep], [polygons[i] for i in keep],
            [votes[i] for i in keep] if votes else votes)


def _row_floor(text: str, rules: WeakRules) -> float:
    """The confidence a read on a line's row needs to be kept."""
    return rules.colon_min_confidence if text.strip() == ":" else rules.row_min_confidence


def grow_to_line(q: np.ndarray, line_h: float, min_aspect: float) -> np.ndarray:
    """A weak candidate's quad grown about its centre, along its own axes, to at
    least the page's line height and ``min_aspect`` of it in width."""
    q = np.asarray(q, np.float32)
    c = q.mean(axis=0)
    ux = (q[1] - q[0]) / max(float(np.linalg.norm(q[1] - q[0])), 1e-6)
    uy = (q[3] - q[0]) / max(float(np.linalg.norm(q[3] - q[0])), 1e-6)
    half_w = max(quad_width(q), min_aspect * line_h) / 2
    half_h = max(quad_height(q), line_h) / 2
    return np.array([c - ux * half_w - uy * half_h, c + ux * half_w - uy * half_h,
                     c + ux * half_w + uy * half_h, c - ux * half_w + uy * half_h], np.float32)


def on_a_row(quad: np.ndarray, rows: Sequence[tuple[float, float]]) -> bool:
    """``quad`` shares at least 60% of its height with one of the (top, bottom) ``rows``."""
    lo, hi = float(quad[:, 1].min()), float(quad[:, 1].max())
    return any(min(hi, b) - max(lo, a) >= 0.6 * (hi - lo) for a, b in rows)


def glyph_like(text: str) -> bool:
    """A letter, a digit or a colon: a speck or a rule's end reads as ".", ",", "-"."""
    return any(c.isalnum() for c in text) or text.strip() == ":"
