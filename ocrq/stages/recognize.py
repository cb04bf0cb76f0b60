"""Text recognition: line crops -> text with a per-line confidence.

Batching: each crop is resized to the network height and padded to a width
bucket that depends on that crop alone; crops of one bucket run together. So
a crop's result does not depend on which other crops share its call — the
in-process engine and the distributed pipeline (which splits a page into
batches) read identical text.

Word spacing: the PP-OCRv4 recogniser often drops the space between Latin
words. CTC emits each character at a time step; where the step distance
between two characters is much wider than the line's usual character pitch,
or where the space class carries real probability between them, a space is
inserted.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocrq.models.runtimes.inputs import run_many_images
from ocrq.models.states import LoadedModel
from ocrq.stages.ctc import Scores
from ocrq.stages.currency import places, settle_currency
from ocrq.stages.lexicon import Glyph, Lexicon, get_lexicon
from ocrq.stages.segments import blank_runs, space_peaks
from ocrq.stages.uncovered import recover
from ocrq.stages.zero_o import settle_word

# Longest run of soft-broken tokens regrouped (the search is quadratic in it).
MAX_REJOIN = 8


@dataclass(frozen=True)
class Recognized:
    text: str
    confidence: float


@dataclass(frozen=True)
class RecognizeOptions:
    bucket: int = 64  # padded widths are multiples of this
    min_width: int = 128
    max_width: int = 2560  # longer crops are squeezed (rare: a whole-page-wide line)
    max_batch_pixels: int = 48 * 4096 * 8  # bounds one forward pass's input
    round_batches: int = 4  # passes' worth of input handed to the runtime at once
    # Without an ink profile (no contrast): CTC step distance against the pitch.
    space_gap_ratio: float = 1.55  # gap / median pitch above which a space is inserted
    space_min_steps: int = 4  # ... and at least this many CTC steps
    space_prob: float = 0.03  # or the space class reaches this probability in the gap
    space_ink_ratio: float = 0.4  # blank run / ink height that makes a word space...
    space_blank_ratio: float = 2.5  # ... and / the line's median gap between letters
    space_few_gaps: int = 3  # lines with fewer gaps between letters than this...
    space_short_ink_ratio: float = 0.7  # ... need blank / ink height above this alone
    # A break that only the crop's geometry put inside what reads as a common
    # word ("INC LUSIVE", "STAT IONERY": the narrow I and L of monospaced
    # receipt fonts leave wide blanks) is taken back (:func:`_rejoin`).
    rejoin: bool = True
    # A blob of ink no emitted character sits on gets the best non-blank class
    # there when it holds at least this probability (stages/uncovered.py); 1 = off.
    uncovered_min_prob: float = 0.3
    # A short code in a currency's place settled to a currency symbol among the
    # network's runner-ups ("RH13.65" -> "RM13.65": stages/currency.py).
    currencies: bool = True
    fix_zero_o: bool = True  # "R0N" -> "RON", "1O5O" -> "1050" (stages/zero_o.py)
    # wordfreq language codes whose common words guide corrections among the
    # network's runner-up glyphs (stages/lexicon.py); () turns that off.
    languages: tuple[str, ...] = ("en",)


def crop_lines(image: np.ndarray, polygons: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Perspective-crop each quad (clockwise from top-left) to an upright strip."""
    crops = []
    for quad in polygons:
        q = np.asarray(quad, np.float32).reshape(4, 2)
        w = int(round(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3]))))
        h = int(round(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))))
        w, h = max(w, 1), max(h, 1)
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        m = cv2.getPerspectiveTransform(q, dst)
        crop = cv2.warpPerspective(
            image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        if h >= 1.5 * w:  # a vertical line: read it turned a quarter
            crop = np.ascontiguousarray(np.rot90(crop))
        crops.append(crop)
    return crops


def _charset(model: LoadedModel) -> list[str]:
    cached = model.extras.get("charset")
    if cached is None:
        # CTC layout of PP-OCR: index 0 is the blank, then the dictionary, then " ".
        cached = ["", *model.manifest.read_charset(), " "]
        model.extras["charset"] = cached
    return cached  # type: ignore[return-value]


def recognize(
    model: LoadedModel, crops: Sequence[np.ndarray], options: RecognizeOptions | None = None
) -> list[Recognized]:
    opts = options or RecognizeOptions()
    height = int(model.manifest.input.get("height", 48))
    charset = _charset(model)
    lexicon = get_lexicon(tuple(opts.languages)) if opts.languages else None
    buckets: dict[int, list[int]] = defaultdict(list)
    resized: list[np.ndarray] = []
    for i, crop in enumerate(crops):
        h, w = crop.shape[:2]
        rw = min(opts.max_width, max(1, math.ceil(height * w / max(h, 1))))
        resized.append(cv2.resize(crop, (rw, height), interpolation=cv2.INTER_LINEAR))
        width = max(opts.min_width, math.ceil(rw / opts.bucket) * opts.bucket)
        buckets[width].append(i)
    chunks: list[tuple[int, list[int]]] = []  # (padded width, crop indices)
    for width, idxs in sorted(buckets.items()):
        per_batch = max(1, opts.max_batch_pixels // (height * width))
        chunks += [(width, idxs[s : s + per_batch]) for s in range(0, len(idxs), per_batch)]
    results: list[Recognized] = [Recognized("", 0.0)] * len(crops)
    # Passes go to the runtime a round at a time: a sharded runtime spreads a
    # round's batches over its copies; the round bounds the memory held at once.
    budget = opts.round_batches * opts.max_batch_pixels
    while chunks:
        round_, pixels = [], 0
        while chunks and (not round_ or pixels + height * chunks[0][0] * len(chunks[0][1])
                          <= budget):
            round_.append(chunks.pop(0))
            pixels += height * round_[-1][0] * len(round_[-1][1])
        batches = []
        for width, chunk in round_:
            batch = np.zeros((len(chunk), height, width, 3), np.uint8)
            # Pad with what normalises to 0 is what PaddleOCR does (zeros after
            # normalisation); we pad in pixel space with mid-grey (127.5 ~ 0).
            batch[:] = 128
            for j, i in enumerate(chunk):
                batch[j, :, : resized[i].shape[1]] = resized[i]
            batches.append(batch)
        outputs = run_many_images(model.runtime, batches, model.manifest.input)
        for (width, chunk), probs in zip(round_, outputs, strict=True):
            for j, i in enumerate(chunk):
                ink = ink_profile(resized[i])
                results[i] = decode(probs[j], charset, opts, ink=ink, width=width,
                                    lexicon=lexicon)
    return results


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


def decode(
    probs: np.ndarray,
    charset: list[str],
    opts: RecognizeOptions,
    ink: Ink | None = None,
    width: int = 0,
    lexicon: Lexicon | None = None,
) -> Recognized:
    """Greedy CTC decoding with confidence and word spacing.

    A space goes where the model gives the space class some probability
    between two characters, or where the crop's ink profile shows a blank run
    between them that is wide for the text's size and for this line's usual
    letter gap (without a profile: a wide CTC step distance for the pitch).
    """
    scores = Scores.of(probs, len(charset))  # the full or the top-k form (stages/ctc.py)
    idx, best = scores.idx, scores.best
    keep = idx != 0
    keep[1:] &= idx[1:] != idx[:-1]
    steps = np.flatnonzero(keep)
    stride = width / len(idx) if width else 0.0
    if ink is not None and opts.uncovered_min_prob < 1.0:
        found = recover(scores, steps, ink.columns, stride, charset, opts.uncovered_min_prob)
        if found:
            idx, best = idx.copy(), best.copy()
            for t, c, p in found:
                idx[t], best[t] = c, p
            steps = np.sort(np.concatenate([steps, [t for t, _, _ in found]])).astype(steps.dtype)
    if steps.size == 0:
        return Recognized("", 0.0)
    chars = [charset[k] if k < len(charset) else "" for k in idx[steps]]
    spacing = _spacing(steps, chars, ink, stride, scores.space)
    tokens, soft = _tokens(chars, spacing, opts)
    if lexicon is not None and opts.rejoin:
        tokens = _rejoin(tokens, soft, chars, lexicon)
    words = _words(scores, steps, idx, chars, tokens, charset, opts, lexicon)
    conf = float(best[steps].mean())
    return Recognized(" ".join(words), conf)


@dataclass(frozen=True)
class _Spacing:
    """A line's measures that decide whether two neighbouring characters are one word."""

    gaps: np.ndarray  # CTC step distance between neighbouring emitted characters
    pitch: float  # the usual such distance between characters that are not spaces
    blanks: list[int]  # longest blank ink run between neighbours; empty without a profile
    usual_blank: float  # their median: the line's usual gap between letters
    ink_height: float  # vertical extent of the ink (0 without a profile)
    peaks: list[float]  # the space class's highest probability between neighbours


def _spacing(steps: np.ndarray, chars: list[str], ink: Ink | None, stride: float,
             space: np.ndarray) -> _Spacing:
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
    return _Spacing(gaps, pitch, blanks, usual_blank, ink.height if ink is not None else 0.0,
                    space_peaks(space, steps).tolist())


def _tokens(chars: list[str], spacing: _Spacing, opts: RecognizeOptions
            ) -> tuple[list[list[int]], list[bool]]:
    """Tokens as lists of emitted steps (indices into ``steps``), split where the
    model emitted a space or where the spacing rules put one; and, per boundary
    between two tokens, whether only the crop's geometry put it there (a *soft*
    break, which the lexicon may take back: :func:`_rejoin`)."""
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


def _space_before(k: int, spacing: _Spacing, opts: RecognizeOptions,
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


def _rejoin(tokens: list[list[int]], soft: list[bool], chars: list[str],
            lexicon: Lexicon) -> list[list[int]]:
    """Take back soft breaks that cut a common word in pieces.

    Along each run of tokens joined by soft breaks, the tokens are grouped so
    that as few of their letter runs as possible are not words of the lexicon
    (a break is taken back only between two letters, and a group of several
    tokens must read as a known word across its joins); ties keep the breaks
    the geometry put. "INC LUSIVE" (one non-word) becomes "INCLUSIVE" (none);
    "SUB TOTAL" (two words) stays as read, and so does a name the lexicon does
    not know ("MA LURI").
    """
    out: list[list[int]] = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and soft[j] and tokens[j] and tokens[j + 1]:
            j += 1
        run = ["".join(chars[k] for k in t) for t in tokens[i : j + 1]]
        for a, b in _groups(run, lexicon):
            out.append([k for t in tokens[i + a : i + b] for k in t])
        i = j + 1
    return out


def _groups(run: list[str], lexicon: Lexicon) -> list[tuple[int, int]]:
    """The best grouping of ``run``'s tokens as (start, end) ranges (see _rejoin)."""
    n = len(run)
    if n == 1 or n > MAX_REJOIN:
        return [(a, a + 1) for a in range(n)]
    # best[e]: (non-words, joins, groups) of the best grouping of run[:e]
    best: list[tuple[int, int, list[tuple[int, int]]] | None] = [(0, 0, [])] + [None] * n
    for e in range(1, n + 1):
        for a in range(e - 1, -1, -1):
            if a < e - 1 and not (run[a][-1].isalpha() and run[a + 1][0].isalpha()):
                break  # groups grow leftwards only across letter-to-letter breaks
            text = "".join(run[a:e])
            if a < e - 1 and not _known(_joined_core(run[a:e]), lexicon):
                continue
            prev = best[a]
            assert prev is not None
            cand = (prev[0] + _non_words(text, lexicon), prev[1] + (e - 1 - a),
                    [*prev[2], (a, e)])
            if best[e] is None or cand[:2] < best[e][:2]:  # type: ignore[index]
                best[e] = cand
    final = best[n]
    assert final is not None
    return final[2]


def _joined_core(parts: list[str]) -> str:
    """The letters across a group's joins: the first part's last letter run, the
    middle parts, the last part's first letter run. Empty (no join) where a run
    belongs to a code or a number ("36G", "I0010", "S.25"), or where a part is
    a one-letter word ("A RM"): those are not pieces of a word."""
    head = _HEAD.search(parts[0])
    tail = _TAIL.match(parts[-1])
    if head is None or tail is None:
        return ""
    if any(len(p) == 1 and p.isalpha() and p.upper() in "AI" for p in parts):
        return ""
    return head.group(1) + "".join(parts[1:-1]) + tail.group(1)


# A part's letter run at a join, not glued to a digit (a code such as "36G" or
# "I0010", or an amount misread "S.25").
_HEAD = re.compile(r"(?:^|[^\w])([^\W\d_]+)$")
_TAIL = re.compile(r"^([^\W\d_]+)(?![\d]|[.,]\d)")


def _non_words(text: str, lexicon: Lexicon) -> int:
    return sum(not _known(r, lexicon) for r in re.findall(r"[^\W\d_]+", text))


def _known(word: str, lexicon: Lexicon) -> bool:
    """A common word; one or two letters only when very common ("A", "NO")."""
    if not word:
        return False
    o = lexicon.options
    return lexicon.zipf(word) >= (o.short_min_zipf if len(word) <= 2 else o.known_zipf)


def _words(scores: Scores, steps: np.ndarray, idx: np.ndarray, chars: list[str],
           tokens: list[list[int]], charset: list[str], opts: RecognizeOptions,
           lexicon: Lexicon | None) -> list[str]:
    """The tokens' words, settled (0/O) and corrected against the lexicon."""
    # NFKC folds the full-width punctuation the Chinese dictionary often picks
    # for Latin text (（ → (, ： → :) into the ASCII a Latin page printed.
    glyphs = [unicodedata.normalize("NFKC", c) for c in chars]
    words: list[str] = []
    kept = [t for t in tokens if t]
    texts = ["".join(glyphs[k] for k in t) for t in kept]
    for n, token in enumerate(kept):
        for word in texts[n].split():
            if opts.fix_zero_o:
                word = settle_word(word)
            # Runner-ups line up with characters only where each glyph is one
            # character ("ﬀ" -> "ff" or a full-width space would shift them).
            if (lexicon is None or len(word) != len(token)
                    or not all(len(glyphs[k]) == 1 for k in token)):
                words.append(word)
                continue
            spans = places(word, texts[n + 1] if n + 1 < len(texts) else None,
                           alone=len(texts) == 1) if opts.currencies else []
            for a, b in spans:  # runner-ups looked up for the span's few glyphs only
                part = settle_currency(
                    _glyphs(scores, steps, idx, token[a:b], word[a:b], charset, lexicon),
                    [(0, b - a)])
                word = word[:a] + part + word[b:]
            if lexicon.needs(word):
                word = lexicon.correct(_glyphs(scores, steps, idx, token, word, charset, lexicon))
            words.append(word)
    return words


def _glyphs(
    scores: Scores,
    steps: np.ndarray,
    idx: np.ndarray,
    token: list[int],
    word: str,
    charset: list[str],
    lexicon: Lexicon,
) -> list[Glyph]:
    """The token's characters with their probability and the network's runners-up
    (the most probable first, at most ``alternatives`` of them)."""
    at = steps[token]
    k = lexicon.options.alternatives + 1  # the top k, the chosen one included
    runners = scores.runners(at, lexicon.options.min_alternative, k)
    out = []
    for step, cands, ch in zip(at, runners, word, strict=True):
        chosen = idx[step]
        alts = []
        for c in cands:
            if c == chosen or not 0 < c < len(charset):
                continue
            alt = unicodedata.normalize("NFKC", charset[c])
            if len(alt) == 1 and not alt.isspace():  # "№" -> "No" would lengthen the word
                alts.append((alt, scores.prob(step, c)))
        out.append(Glyph(ch, float(scores.best[step]), tuple(alts)))
    return out
