"""Text recognition: line crops -> text with a per-line confidence.

Batching: each crop is resized to the network height and padded to a width
bucket that depends on that crop alone; crops of one bucket run together. So
a crop's result does not depend on which other crops share its call — the
in-process engine and the distributed pipeline (which splits a page into
batches) read identical text.

Decoding: greedy CTC, then punctuation the crop shows but the argmax left
blank (stages/uncovered.py), word spaces (stages/spacing.py), soft breaks
inside common words taken back (stages/rejoin.py), 0/O (stages/zero_o.py), a
currency's place (stages/currency.py) and look-alike glyphs
(stages/lexicon.py). Words with a doubtful glyph are then read by a second
recogniser where one is given, and the two readings settled (stages/fusion.py).
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ocrq.models.states import LoadedModel
from ocrq.stages import fusion, passes
from ocrq.stages.amounts import Doubt, code_letter, digit_doubts, ends_in_amount
from ocrq.stages.ctc import Scores
from ocrq.stages.currency import places, settle_currency
from ocrq.stages.lexicon import Glyph, Lexicon, LexiconOptions, get_lexicon
from ocrq.stages.numbers import at_quantity, settle_number
from ocrq.stages.rejoin import join_times, rejoin
from ocrq.stages.spacing import Ink, SpaceRules, ink_profile, measure, split_tokens
from ocrq.stages.uncovered import recover
from ocrq.stages.zero_o import settle_word


@dataclass(frozen=True)
class Recognized:
    text: str
    confidence: float
    # Runner-up digits and separators of the text's amounts, for the page (stages/sums.py).
    doubts: tuple[Doubt, ...] = ()
    # Per word of ``text``: its CTC steps, least probable glyph and whether a settling
    # rule made it (what stages/fusion.py needs; not part of the result).
    spans: tuple[fusion.WordSpan, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class RecognizeOptions:
    # Padded widths are multiples of this: the network's output has one step per 8
    # columns, so every step of a crop is its own; 16, not 64, pads ~7% of what a
    # page reads (mostly short crops up to min_width), not ~14% (a GPU's buckets
    # pad on to 64 and cut the steps back).
    bucket: int = 16
    min_width: int = 128
    max_width: int = 2560  # longer crops are squeezed (rare: a whole-page-wide line)
    max_batch_pixels: int = 48 * 4096 * 8  # bounds one forward pass's input
    round_batches: int = 4  # passes' worth of input handed to the runtime at once
    spacing: SpaceRules = SpaceRules()  # where word spaces go (stages/spacing.py)
    # A break only the crop's geometry put inside a common word ("INC LUSIVE", "STAT IONERY":
    # the narrow I and L of monospaced receipt fonts leave wide blanks) is taken back.
    rejoin: bool = True
    # A blob of ink no emitted character sits on gets the best non-blank class
    # there when it holds at least this probability (stages/uncovered.py); 1 = off.
    uncovered_min_prob: float = 0.3
    # A short code in a currency's place settled to a currency symbol among the
    # network's runner-ups ("RH13.65" -> "RM13.65": stages/currency.py).
    currencies: bool = True
    # Look-alike letters in numbers and a misread '@' before a price or rate,
    # settled among the network's runner-ups (stages/numbers.py).
    numbers: bool = True
    # Digits of amounts the network nearly read otherwise (a runner-up at least this share
    # of the chosen digit's probability) go to the page's sums (stages/sums.py); 1 = none.
    amount_doubt: float = 0.1
    # A lone digit after an amount at a line's end is a tax code's letter where the network
    # offered one at this share of the digit's probability (amounts.code_letter); 1 = off.
    code_letters: float = 0.2
    fix_zero_o: bool = True  # "R0N" -> "RON", "1O5O" -> "1050" (stages/zero_o.py)
    # A word whose weakest glyph is below this is read again by the second recogniser (if any)
    # and the readings settled (stages/fusion.py); 0 = never, 1 = every word no rule made.
    second_below: float = 0.9
    second_context: int = 0  # words either side of a doubtful one read with it
    # wordfreq language codes whose common words guide corrections among the
    # network's runner-up glyphs (stages/lexicon.py); () turns that off.
    languages: tuple[str, ...] = ("en",)

    def __post_init__(self) -> None:
        if not fusion.is_threshold(self.second_below):
            raise ValueError("the second reading's threshold (OCRQ_SECOND_READING) must lie "
                             f"between 0 (off) and 1 (every word), not {self.second_below}")


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
    model: LoadedModel, crops: Sequence[np.ndarray], options: RecognizeOptions | None = None,
    second: LoadedModel | None = None,
) -> list[Recognized]:
    """Each crop's text; ``second``: the second recogniser, which reads again the
    words the first was unsure of (stages/fusion.py)."""
    opts = options or RecognizeOptions()
    height = int(model.manifest.input.get("height", 48))
    charset = _charset(model)
    lexicon = get_lexicon(tuple(opts.languages)) if opts.languages else None
    resized: list[np.ndarray] = []
    for crop in crops:
        h, w = crop.shape[:2]
        rw = min(opts.max_width, max(1, math.ceil(height * w / max(h, 1))))
        resized.append(cv2.resize(crop, (rw, height), interpolation=cv2.INTER_LINEAR))
    chunks = passes.chunks(resized, opts, height)
    results: list[Recognized] = [Recognized("", 0.0)] * len(crops)
    again: list[_Window] = []  # doubtful words the second recogniser reads
    reads_again = (second is not None and opts.second_below > 0
                   and int(second.manifest.input.get("height", 48)) == height)
    for i, width, probs in passes.forward(model, resized, chunks, opts, height):
        results[i] = decode(probs, charset, opts, ink=ink_profile(resized[i]), width=width,
                            lexicon=lexicon)
        stride = width / len(probs)  # input columns per CTC step
        for w0, w1, t0, t1 in fusion.windows(results[i].spans, len(probs), opts.second_below,
                                             opts.second_context) if reads_again else ():
            crop = resized[i][:, round(t0 * stride) : round(t1 * stride)]
            if crop.shape[1] > 0:
                again.append(_Window(i, w0, w1, fusion.compact(probs[t0:t1], len(charset)), crop))
    if again and second is not None:  # in line order, not the order passes finished in
        again.sort(key=lambda w: (w.line, w.first))
        _read_again(second, again, charset, results, opts, lexicon)
    return results


@dataclass(frozen=True)
class _Window:
    line: int
    first: int  # the words [first, end) of the line's text
    end: int
    scores: Scores  # the first network's steps under the window
    crop: np.ndarray


def _read_again(second: LoadedModel, again: list[_Window], charset: list[str],
                results: list[Recognized], opts: RecognizeOptions,
                lexicon: Lexicon | None) -> None:
    """The second recogniser's reading of each window, settled into ``results``."""
    other = _charset(second)
    crops = [w.crop for w in again]
    settled: dict[int, tuple[dict[int, str], list[Doubt]]] = {}  # per window
    planned = passes.chunks(crops, replace(opts, min_width=opts.bucket), crops[0].shape[0])
    for n, _width, probs in passes.forward(second, crops, planned, opts, crops[0].shape[0]):
        win = again[n]
        words = results[win.line].text.split()
        spans = results[win.line].spans
        # Both outputs in the top-k form a GPU runtime returns: the same page reads
        # alike on either (a class outside the top k weighs the floor there).
        theirs = fusion.Reading(fusion.compact(probs, len(other)), other)
        chosen, doubts = fusion.settle(
            words[win.first : win.end], [s.settled for s in spans[win.first : win.end]],
            fusion.greedy(theirs), fusion.Reading(win.scores, charset), theirs, lexicon,
            fusion.word_offset(words, win.first), opts.second_below)
        settled[n] = ({win.first + k: word for k, word in chosen.items()}, doubts)
    picks: dict[int, dict[int, str]] = defaultdict(dict)
    extra: dict[int, list[Doubt]] = defaultdict(list)
    for n in sorted(settled):  # in line order, whatever order the passes finished in
        picks[again[n].line].update(settled[n][0])
        extra[again[n].line] += settled[n][1]
    for i in set(picks) | set(extra):
        r = results[i]
        text, doubts = fusion.apply(r.text, r.doubts, picks[i], extra[i])
        results[i] = replace(r, text=text, doubts=tuple(doubts))


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
    steps = scores.path()
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
    spacing = measure(steps, chars, ink, stride, scores.space)
    tokens, soft = split_tokens(chars, spacing, opts.spacing)
    if lexicon is not None and opts.rejoin:
        tokens = rejoin(tokens, soft, chars, lexicon)
    if opts.rejoin:
        tokens = join_times(tokens, chars)
    words, doubts, spans = _words(scores, best, steps, idx, chars, tokens, charset, opts,
                                  lexicon)
    conf = float(best[steps].mean())
    return Recognized(" ".join(words), conf, tuple(doubts), tuple(spans))


def _words(scores: Scores, best: np.ndarray, steps: np.ndarray, idx: np.ndarray,
           chars: list[str], tokens: list[list[int]], charset: list[str],
           opts: RecognizeOptions, lexicon: Lexicon | None
           ) -> tuple[list[str], list[Doubt], list[fusion.WordSpan]]:
    """The tokens' words, settled (0/O, currencies, numbers) and corrected
    against the lexicon; the doubtful digits of their amounts; each word's span."""
    # NFKC folds the full-width punctuation the Chinese dictionary often picks
    # for Latin text (（ → (, ： → :) into the ASCII a Latin page printed.
    glyphs = [unicodedata.normalize("NFKC", c) for c in chars]
    # A token's glyphs with the network's runner-ups, looked up only where needed and
    # once per token: several settling rules may ask for the same token's.
    offered = functools.partial(_alternatives, scores, steps, idx, charset=charset,
                                options=lexicon.options if lexicon else LexiconOptions())
    found: dict[tuple[int, ...], list[tuple[float, tuple[tuple[str, float], ...]]]] = {}

    def runners(token: list[int], word: str) -> list[Glyph]:
        key = tuple(token)
        if key not in found:
            found[key] = offered(token)
        return [Glyph(ch, p, alts) for ch, (p, alts) in zip(word, found[key], strict=True)]

    words: list[str] = []
    doubts: list[Doubt] = []
    spans: list[fusion.WordSpan] = []
    kept = [t for t in tokens if t]
    texts = ["".join(glyphs[k] for k in t) for t in kept]
    for n, token in enumerate(kept):
        parts = texts[n].split()
        for m, word in enumerate(parts):
            last_word = n + 1 == len(texts) and m + 1 == len(parts)
            if opts.fix_zero_o:
                word = settle_word(word)
            # Runner-ups line up with characters only where each glyph is one
            # character ("ﬀ" -> "ff" or a full-width space would shift them).
            if len(word) != len(token) or not all(len(glyphs[k]) == 1 for k in token):
                words.append(word)  # no glyph-by-glyph reading: never read again, a border
                spans.append(fusion.WordSpan(steps[token[0]], steps[token[-1]], 1.0, True))
                continue
            if lexicon is not None and opts.currencies:
                word = _currencies(word, token, texts, n, lexicon, runners)
            if opts.numbers and any(c.isdigit() for c in word):
                word = settle_number(runners(token, word))
                if word[:1] == "0":  # "02 X RM 6.35": the '@' of a count read as a zero
                    word = at_quantity(runners(token, word), _next_word(texts, n, parts, m))
            if (opts.code_letters < 1 and len(word) == 1 and last_word and words
                    and ends_in_amount(words[-1])):
                word = code_letter(runners(token, word)[0], opts.code_letters)
            if lexicon is not None and lexicon.needs(word):
                word = lexicon.correct(runners(token, word))
            if (opts.amount_doubt < 1 and len(word) == len(token)
                    and any(c.isdigit() for c in word)):
                # Only digits the network itself chose: a settled glyph has no runner-ups.
                own = [g if g.char == glyphs[k] else replace(g, alternatives=())
                       for g, k in zip(runners(token, word), token, strict=True)]
                doubts += digit_doubts(word, own, fusion.word_offset(words, len(words)),
                                       opts.amount_doubt)
            at = steps[token]  # the word's steps, for a second reading (stages/fusion.py)
            spans.append(fusion.WordSpan(at[0], at[-1], best[at].min(), word != parts[m]))
            words.append(word)
    return words, doubts, spans


def _currencies(word: str, token: list[int], texts: list[str], n: int, lexicon: Lexicon,
                runners: Callable[[list[int], str], list[Glyph]]) -> str:
    """``word`` (of token ``n`` of ``texts``) with its runs in a currency's place
    settled to a currency (stages/currency.py)."""
    last = n + 1 == len(texts)
    label = last and n > 0 and not lexicon.common(word)
    for a, b in places(word, None if last else texts[n + 1], alone=len(texts) == 1,
                       label=label):
        # runner-ups looked up for the span's few glyphs only
        word = word[:a] + settle_currency(runners(token[a:b], word[a:b])) + word[b:]
    return word


def _next_word(texts: list[str], n: int, parts: list[str], m: int) -> str | None:
    """The word after word ``m`` of token ``n`` on the line (None at its end)."""
    if m + 1 < len(parts):
        return parts[m + 1]
    later = texts[n + 1].split() if n + 1 < len(texts) else []
    return later[0] if later else None


def _alternatives(
    scores: Scores,
    steps: np.ndarray,
    idx: np.ndarray,
    token: list[int],
    charset: list[str],
    options: LexiconOptions,
) -> list[tuple[float, tuple[tuple[str, float], ...]]]:
    """Per character of the token: the chosen glyph's probability and the network's
    runners-up (the most probable first, at most ``alternatives`` of them)."""
    at = steps[token]
    k = options.alternatives + 1  # the top k, the chosen one included
    runners = scores.runners(at, min(options.min_alternative, options.nonword_alternative), k)
    out = []
    for step, cands in zip(at, runners, strict=True):
        chosen = idx[step]
        alts = []
        for c in cands:
            if c == chosen or not 0 < c < len(charset):
                continue
            alt = unicodedata.normalize("NFKC", charset[c])
            if len(alt) == 1 and not alt.isspace():  # "№" -> "No" would lengthen the word
                alts.append((alt, scores.prob(step, c)))
        out.append((float(scores.best[step]), tuple(alts)))
    return out
