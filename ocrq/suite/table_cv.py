"""Classic-CV pixel work for the ``table`` stage (ocrq/suite/table.py): ruling
lines, the ink of each recognised line, and lines cut where they cross a
column gap. Every number comes from the ``tcd`` model's parameters.

A cTDaR-style cell box is the box of the cell's content, so a segment's box is
the box of its ink (ruling lines left out), not the text detector's padded
polygon.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Seg:
    """A piece of a recognised line that belongs to one cell: its ink box and text."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    order: int  # the OCR line it came from
    pad_h: float  # the OCR line's height (the text size, for gaps and tolerances)

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def union(self, other: Seg, sep: str = " ") -> Seg:
        text = sep.join(t for t in (self.text, other.text) if t)
        return replace(self, x0=min(self.x0, other.x0), y0=min(self.y0, other.y0),
                       x1=max(self.x1, other.x1), y1=max(self.y1, other.y1), text=text,
                       pad_h=max(self.pad_h, other.pad_h))


@dataclass(frozen=True)
class Rulings:
    horizontal: np.ndarray  # uint8 masks, 255 on ruling pixels
    vertical: np.ndarray


def ink(gray: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Dark pixels (Otsu, but never lighter than ``ink_max_grey``): scans and
    born-digital pages alike have dark text on a light ground."""
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    level = min(float(otsu), float(p["ink_max_grey"]))
    return np.where(gray < level, 255, 0).astype(np.uint8)


def rulings(mask: np.ndarray, p: dict[str, Any]) -> Rulings:
    """Ruling lines by morphology: ink runs longer than ``rule_min_frac`` of the
    page side (and at least ``rule_min_px``), a pixel of slack across."""
    h, w = mask.shape[:2]
    lx = max(int(p["rule_min_px"]), int(w * float(p["rule_min_frac"])))
    ly = max(int(p["rule_min_px"]), int(h * float(p["rule_min_frac"])))
    horiz = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (lx, 1)))
    vert = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (1, ly)))
    grow = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    thick = int(p["rule_max_px"]) + 1
    return Rulings(cv2.dilate(thin(horiz, thick, across=0), grow),
                   cv2.dilate(thin(vert, thick, across=1), grow))


def thin(lines: np.ndarray, thick: int, across: int) -> np.ndarray:
    """``lines`` without what is ``thick`` px or more across (axis 0: rows, so a
    horizontal line's thickness): a filled bar or a shaded cell is no rule."""
    size = (1, thick) if across == 0 else (thick, 1)
    solid = cv2.morphologyEx(lines, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, size))
    return cv2.bitwise_and(lines, cv2.bitwise_not(solid))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def _word_spans(text: str) -> list[tuple[str, float]]:
    """Words and the share of the line's characters before their middle."""
    out, at, n = [], 0, max(1, len(text))
    for word in text.split():
        start = text.index(word, at)
        at = start + len(word)
        out.append((word, (start + len(word) / 2) / n))
    return out


def _split_text(text: str, pieces: list[tuple[int, int]]) -> list[str]:
    """Hand each word to the piece its position in the string falls in, the
    pieces weighted by their ink width (characters are about evenly wide)."""
    widths = np.array([b - a for a, b in pieces], np.float64)
    bounds = np.cumsum(widths) / max(1.0, float(widths.sum()))
    words: list[list[str]] = [[] for _ in pieces]
    for word, at in _word_spans(text):
        words[min(len(pieces) - 1, int(np.searchsorted(bounds, at)))].append(word)
    return [" ".join(w) for w in words]


def _pieces(cols: np.ndarray, vrule: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Ink column runs of one line, joined across gaps narrower than ``min_gap``
    unless a vertical ruling stands in the gap."""
    pieces: list[tuple[int, int]] = []
    for a, b in _runs(cols):
        if pieces and (a - pieces[-1][1] < min_gap and not vrule[pieces[-1][1]:a].any()):
            pieces[-1] = (pieces[-1][0], b)
        else:
            pieces.append((a, b))
    return pieces


def segments(box: tuple[int, int, int, int], text: str, order: int, text_ink: np.ndarray,
             rules: Rulings, p: dict[str, Any]) -> list[Seg]:
    """One recognised line as the pieces of it that lie in different cells: cut
    where its ink leaves a gap wider than ``split_gap`` line heights or where a
    vertical ruling runs through it; each piece's box is tightened to its ink."""
    x0, y0, x1, y1 = box
    height = max(1, y1 - y0)
    patch = text_ink[y0:y1, x0:x1] > 0
    if patch.size == 0 or not patch.any():
        return [Seg(x0, y0, x1, y1, text.strip(), order, float(height))]
    cols = patch.sum(axis=0) >= int(p["ink_min_px"])
    vrule = rules.vertical[y0:y1, x0:x1].mean(axis=0) > 127 * float(p["vrule_cut"])
    pieces = _pieces(cols | False, vrule, max(2, int(float(p["split_gap"]) * height)))
    if not pieces:
        return [Seg(x0, y0, x1, y1, text.strip(), order, float(height))]
    texts = _split_text(text, pieces) if len(pieces) > 1 else [text.strip()]
    out = []
    for (a, b), words in zip(pieces, texts, strict=True):
        top, bottom = _main_band(patch[:, a:b].sum(axis=1), int(p["band_gap_px"]))
        out.append(Seg(x0 + a, y0 + top, x0 + b, y0 + bottom, words, order, float(height)))
    return _merge_wordless(out)


def _main_band(profile: np.ndarray, gap: int) -> tuple[int, int]:
    """[top, bottom) of the heaviest band of inked rows (runs less than ``gap``
    blank rows apart joined): a padded line box also catches the descenders and
    ascenders of the lines above and below it."""
    bands: list[list[int]] = []
    for a, b in _runs(profile > 0):
        if bands and a - bands[-1][1] <= gap:
            bands[-1][1] = b
        else:
            bands.append([a, b])
    top, bottom = max(bands, key=lambda t: int(profile[t[0]:t[1]].sum()))
    return top, bottom


def _merge_wordless(segs: list[Seg]) -> list[Seg]:
    """A piece the recogniser gave no word (a stray mark, a rule's end) joins its
    nearest neighbour on the line rather than becoming a cell of its own."""
    out = list(segs)
    while len(out) > 1 and any(not s.text for s in out):
        i = next(i for i, s in enumerate(out) if not s.text)
        j = i - 1 if i == len(out) - 1 or (
            i > 0 and out[i].x0 - out[i - 1].x1 <= out[i + 1].x0 - out[i].x1) else i + 1
        merged = out[min(i, j)].union(out[max(i, j)])
        out[min(i, j):max(i, j) + 1] = [merged]
    return out


def line_box(polygon: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """An OCR polygon's axis-aligned box, clipped to the image."""
    h, w = shape[:2]
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    return (int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.floor(y0), 0, h)),
            int(np.clip(np.ceil(x1), 0, w)), int(np.clip(np.ceil(y1), 0, h)))


def ruled_between(rules: Rulings, y_top: float, y_bottom: float, x0: float, x1: float,
                  cover: float) -> bool:
    """Whether a horizontal ruling covering ``cover`` of [x0, x1) lies between two rows."""
    a, b = int(max(0, y_top)), int(max(y_top + 1, y_bottom))
    band = rules.horizontal[a:b, int(x0):int(max(x0 + 1, x1))] > 0
    return bool(band.size) and float(band.mean(axis=1).max(initial=0.0)) >= cover
