"""Word spacing of a decoded line: where a space goes between two characters.

The PP-OCRv4 recogniser often drops the space between Latin words. CTC emits
each character at a time step; where the space class carries real probability
between two characters, or where the crop's ink profile shows a blank run that
is wide for the text's size and for the line's usual letter gap (without a
profile: a wide CTC step distance for the pitch), a space is inserted. Inside
an amount ("72.00") nothing splits.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import cv2
import numpy as np

from ocrq.stages.segments import blank_runs, space_peaks


@dataclass(frozen=True)
class SpaceRules:
    """The spacing thresholds (RecognizeOptions.spacing)."""

    # Without an ink profile (no contrast): CTC step distance against the pitch.
    space_gap_ratio: float = 1.55  # gap / median pitch above which a space is inserted
    space_min_steps: int = 4  # ... and at least this many CTC steps
    space_prob: float = 0.03  # or the space class reaches this probability in the gap
    space_ink_ratio: float = 0.4  # blank run / ink height that makes a word space...
    space_blank_ratio: float = 2.5  # ... and / the line's median gap between letters
    space_few_gaps: int = 3  # lines with fewer gaps between letters than this...
    space_short_ink_ratio: float = 0.7  # ... need blank / ink height above this alone


@dataclass(frozen=True)
class Ink:
    columns: np.ndarray  # bool per column of the resized crop: any ink
    height: float  # vertical extent of the ink (px at network height)


def ink_profile(strip: np.ndarray) -> Ink | None:
    """Which columns of a resized line crop carry ink (Otsu binarisation)."""
    gray = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY) if strip.ndim == 3 else strip
    lo, hi, _, _ = cv2.minMaxLoc(gray)
    if int(hi) - int(lo) < 40:  # no contrast: nothing to measure
        return None
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    # Exact integer sums from cv2.reduce: the numbers numpy's mean and sum give,
    # at a fraction of their per-call cost on a 48-row strip (one per line).
    rows = np.flatnonzero(_sums(binary, 1) / binary.shape[1] > 0.02)
    if rows.size == 0:
        return None
    band = binary[rows[0] : rows[-1] + 1]
    # Two ink pixels in a column, so a speck of noise does not close a gap.
    return Ink(_sums(band, 0) >= 2, float(rows[-1] - rows[0] + 1))


def _sums(binary: np.ndarray, axis: int) -> np.ndarray:
    """Sums of a uint8 image along ``axis`` (0: per column, 1: per row), as int32."""
    return cv2.reduce(binary, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()


@dataclass(frozen=True)
class Spacing:
    """A line's measures that decide whether two neighbouring characters are one word."""

    gaps: np.ndarray  # CTC step distance between neighbouring emitted characters
    pitch: float  # the usual such distance between characters that are not spaces
    blanks: list[int]  # longest blank ink run between neighbours; empty without a profile
    usual_blank: float  # their median: the line's usual gap between letters
    ink_height: float  # vertical extent of the ink (0 without a profile)
    peaks: list[float]  # the space class's highest probability between neighbours


def measure(steps: np.ndarray, chars: list[str], ink: Ink | None, stride: float,
             space: np.ndarray) -> Spacing:
    gaps = np.diff(steps)
    # The usual pitch: median distance between neighbours that are not spaces.
    letter = np.array([c != " " for c in chars])
    inner = gaps[letter[:-1] & letter[1:]].tolist()
    # statistics.median: exact for ints as np.median, and far cheaper on a few dozen.
    pitch = float(statistics.median(inner)) if inner else 0.0
    blanks: list[int] = []
    if ink is not None and stride and steps.size > 1:
        # int() of a positive float is its floor, as astype's truncation.
        cols = ((steps + 0.5) * stride).astype(np.int64)
        blanks = blank_runs(ink.columns, cols[:-1], cols[1:]).tolist()
    usual_blank = float(statistics.median(blanks)) if blanks else 0.0
    return Spacing(gaps, pitch, blanks, usual_blank, ink.height if ink is not None else 0.0,
                    space_peaks(space, steps).tolist())


def split_tokens(chars: list[str], spacing: Spacing, opts: SpaceRules
            ) -> tuple[list[list[int]], list[bool]]:
    """Tokens as lists of emitted steps (indices into ``steps``), split where the
    model emitted a space or where the spacing rules put one; and, per boundary
    between two tokens, whether the break is *soft*: put by the crop's geometry
    or a weak space-class peak, not by a space the network emitted, so the
    lexicon may take it back (stages/rejoin.py)."""
    tokens: list[list[int]] = [[] if chars[0] == " " else [0]]
    soft: list[bool] = []
    for k in range(1, len(chars)):
        prev, cur = chars[k - 1], chars[k]
        if cur == " ":
            if not _space_in_number(chars, k):
                tokens.append([])
                soft.append(False)
            continue
        if prev != " ":
            kind = _space_before(k, spacing, opts, _in_number(chars, k))
            if kind:
                tokens.append([])
                soft.append(kind in ("gap", "net"))
        tokens[-1].append(k)
    return tokens, soft


def _in_number(chars: list[str], k: int) -> bool:
    """Characters k-1, k sit beside the separator of a number: a decimal point
    ("12.|50", "12|.50") or a comma grouping thousands ("1,|250.00").

    A point or comma is narrow and, in the monospaced fonts of receipts, sits
    in a whole character cell: the ink gap beside it looks as wide as a word
    break, and the network's space class often rises a little there. Inside a
    number it never is one. A comma followed by other than three digits may
    well end a number in a list or a date ("18, 20", "OCT 3, 2016").
    """
    for sep in (k - 1, k):  # the separator after or before the break
        if (1 <= sep < len(chars) - 1 and chars[sep] in ".,"
                and chars[sep - 1].isdigit() and chars[sep + 1].isdigit()
                and (chars[sep] == "." or _three_digits(chars, sep + 1))):
            return True
    return False


def _space_in_number(chars: list[str], k: int) -> bool:
    """The emitted space ``chars[k]`` sits beside the separator of an amount
    ("72.| |00", "191| |.20"): the network's own space there is the same
    narrow-glyph illusion, and is dropped. Only with at least two decimals
    after the point: "N0. 1" is more likely "NO. 1" misread than a number."""
    rest = chars[:k] + chars[k + 1 :]
    if not 0 < k < len(chars) - 1 or not _in_number(rest, k):
        return False
    sep = k - 1 if rest[k - 1] in ".," else k
    decimals = 0
    while sep + 1 + decimals < len(rest) and rest[sep + 1 + decimals].isdigit():
        decimals += 1
    return decimals >= 2


def _three_digits(chars: list[str], i: int) -> bool:
    """Exactly three digits start at ``i`` (a thousands group)."""
    j = i
    while j < len(chars) and chars[j].isdigit():
        j += 1
    return j - i == 3


def _space_before(k: int, spacing: Spacing, opts: SpaceRules,
                  in_number: bool = False) -> str | None:
    """Whether a space goes between emitted characters ``k - 1`` and ``k``, and
    why: ``"net"`` (the space class carries probability in the gap), ``"gap"``
    (only the crop's geometry says so), None (no space).

    ``in_number``: nothing splits there; only a space the network emitted as a
    character (handled by the caller) does.
    """
    if in_number:
        return None
    if spacing.peaks[k - 1] >= opts.space_prob:
        return "net"
    if spacing.blanks:
        # The crop shows the gap: wide for the text's size and wide
        # against this line's usual gap between letters (fonts differ).
        blank = spacing.blanks[k - 1]
        if len(spacing.blanks) < opts.space_few_gaps:
            # Too few letters to know the line's usual gap ("1 X"): the text's
            # size alone decides, with a stricter ratio.
            if blank >= opts.space_short_ink_ratio * spacing.ink_height:
                return "gap"
        elif (blank >= opts.space_ink_ratio * spacing.ink_height
              and blank >= opts.space_blank_ratio * max(spacing.usual_blank, 1.0)):
            return "gap"
    elif spacing.pitch > 0:
        gap = int(spacing.gaps[k - 1])
        if gap >= opts.space_min_steps and gap >= opts.space_gap_ratio * spacing.pitch:
            return "gap"
    return None
