"""Word-level correction of recognised text among the recogniser's own alternatives.

The PP-OCRv4 recogniser confuses glyphs that look alike in receipt fonts:
M is read as H or N ("Tine", "TANAN"), l/I/T/1, O/Q, P/F. At such a
character the network usually gives the right glyph the second-highest
probability. For a word that is not a common word of the configured
languages, we try swapping in those runner-up characters (at most two) and
keep a swap when the new word is common (Zipf >= 2, about once per 100
million words: not a rare name that happens to be one glyph away) and common
enough to outweigh what the swap costs in the network's own probabilities (a
noisy-channel choice):

    score(word) = ln(10) * zipf(word) + sum(ln p(chosen char))

``zipf`` is the word's frequency on the Zipf scale (log10 per billion words)
from the wordfreq package, whose lists ship inside the wheel: nothing is
downloaded. Words that are already common, numbers, and codes with more than
one digit are never touched; a glyph the network did not offer is never
invented.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ocrq.errors import OcrqError

LN10 = math.log(10)
MAX_WORD = 20  # longer alphanumeric runs are left as read


@dataclass(frozen=True)
class Glyph:
    """One decoded character with its probability and the runners-up."""

    char: str
    prob: float
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class LexiconOptions:
    known_zipf: float = 3.0  # a word at least this common is left as read
    min_zipf: float = 2.0  # a correction must make a word at least this common
    short_min_zipf: float = 5.5  # two-letter words change only into very common ones
    max_swaps: int = 2
    min_alternative: float = 0.02  # runner-up glyphs below this probability are not offered
    # ... except for a token that is no word at all (a non-word error is itself
    # evidence of a misread glyph, where a rare real word may be just rare):
    # there runner-ups down to this probability are tried.
    nonword_alternative: float = 0.001
    nonword_zipf: float = 1.0  # below this the read token counts as no word
    # A token that is a real if uncommon word ("SDN", "BHD" in English lists)
    # changes only where the network nearly chose the other glyph: frequency
    # alone would turn every rare word into its common neighbour ("SON").
    real_word_zipf: float = 2.0
    real_word_ratio: float = 0.25  # runner-up / chosen probability needed then
    alternatives: int = 4  # runner-ups looked at per character


class UnknownLanguage(OcrqError):
    code = "unknown_language"


class Lexicon:
    """Word frequencies for a set of languages (wordfreq codes such as ``en``, ``ms``)."""

    def __init__(self, languages: Sequence[str], options: LexiconOptions | None = None) -> None:
        check_languages(languages)
        self.languages = tuple(languages)
        self.options = options or LexiconOptions()
        self._zipf = lru_cache(maxsize=65536)(self._lookup)

    def _lookup(self, word: str) -> float:
        import wordfreq  # lazy: only engines that correct words pay for the import

        return max(wordfreq.zipf_frequency(word, lang) for lang in self.languages)

    def zipf(self, word: str) -> float:
        return self._zipf(word.lower())

    def _core(self, text: str) -> tuple[range, list[int], float] | None:
        """The token's alphanumeric core, its digit positions and zipf; None: keep as is."""
        core = _core_span(text)
        i0, i1 = core.start, core.stop
        # Long tokens (URLs, codes run together) cost quadratic work and are not words.
        if not 2 <= len(core) <= MAX_WORD or not text[i0:i1].isalnum():
            return None
        digits = [i for i in core if text[i].isdigit()]
        # A number, or a code with several digits ("SR1234"), is not a word.
        if len(digits) > 1 or len(digits) == len(core):
            return None
        z0 = self.zipf(text[i0:i1])  # "mp3", "1st" and "co2" are words too
        return None if z0 >= self.options.known_zipf else (core, digits, z0)

    def common(self, word: str) -> bool:
        """A common word: two letters or fewer only when very common ("NO", "OF")."""
        o = self.options
        return self.zipf(word) >= (o.short_min_zipf if len(word) <= 2 else o.known_zipf)

    def needs(self, text: str) -> bool:
        """Whether ``text`` (one token) or a word inside it is a candidate for correction."""
        return any(self._core(text[r.start : r.stop]) is not None for r in _parts(text))

    def correct(self, word: Sequence[Glyph]) -> str:
        """The best spelling of one whitespace-free token (punctuation at its ends kept).

        A token that joins words with punctuation ("Cade&Desc", "aty(s)",
        "Tax(RM)") is corrected word by word: the network misreads a glyph
        there as anywhere, and the punctuation is no reason to leave it.
        """
        text = "".join(g.char for g in word)
        if len(text) != len(word):
            return text  # every glyph must be one character (decode sees to that)
        out = list(text)
        # Last part first: a correction that changes a part's length ("ß" cased as
        # "SS") leaves the earlier parts' places as they were.
        for r in reversed(_parts(text)):
            out[r.start : r.stop] = self._correct_one(word[r.start : r.stop])
        return "".join(out)

    def _correct_one(self, word: Sequence[Glyph]) -> str:
        """:meth:`correct` for a token with at most end punctuation around its core."""
        text = "".join(g.char for g in word)
        found = self._core(text)
        if found is None:
            return text
        core, digits, z0 = found
        opts = self.options
        floor = opts.nonword_alternative if z0 < opts.nonword_zipf else opts.min_alternative
        ratio = opts.real_word_ratio if z0 >= opts.real_word_zipf else 0.0
        letters = {i: [(a, p) for a, p in word[i].alternatives
                       if a.isalpha() and p >= max(floor, ratio * word[i].prob)]
                   for i in core}
        slots = [i for i in core if letters[i]]
        if any(d not in slots for d in digits):
            return text  # a digit becomes a letter only if the network offered one
        best_score, best = LN10 * z0, text
        for n in range(1, opts.max_swaps + 1):
            for pos in itertools.combinations(slots, n):
                if any(d not in pos for d in digits):
                    continue
                for picks in itertools.product(*(letters[i] for i in pos)):
                    chars = [g.char for g in word]
                    cost = 0.0
                    for i, (alt, p) in zip(pos, picks, strict=True):
                        chars[i] = _same_case(alt, chars, i)
                        cost += math.log(p) - math.log(max(word[i].prob, 1e-9))
                    z = self.zipf("".join(chars[i] for i in core))
                    if z < opts.min_zipf or (len(core) < 3 and z < opts.short_min_zipf):
                        continue
                    score = LN10 * z + cost
                    if score > best_score:
                        best_score, best = score, "".join(chars)
        return best


def _core_span(text: str) -> range:
    """``text`` without the punctuation at its ends (empty: no letter or digit)."""
    i0, i1 = 0, len(text)
    while i0 < i1 and not text[i0].isalnum():
        i0 += 1
    while i1 > i0 and not text[i1 - 1].isalnum():
        i1 -= 1
    return range(i0, i1)


def _parts(text: str) -> list[range]:
    """The stretches of ``text`` corrected each on its own: the whole token when
    its core is one alphanumeric run (end punctuation kept with it, as before),
    else each alphanumeric run between the punctuation ("Cade", "Desc"). A
    compound with a digit is an amount or a code ("RM5.09", "CTO-98"): its
    letters are not words, and it stays whole (so ``_core`` leaves it)."""
    core = _core_span(text)
    if not core or text[core.start : core.stop].isalnum() or any(c.isdigit() for c in text):
        return [range(len(text))]
    return [range(m.start(), m.end()) for m in _ALNUM.finditer(text)]


# One alphanumeric run (str.isalnum's notion: letters and digits of any script).
_ALNUM = re.compile(r"[^\W_]+")


def _same_case(alt: str, chars: list[str], i: int) -> str:
    """Case the swapped-in letter like the letter it replaces, else like its
    neighbours (the lexicon is case-free)."""
    own = chars[i]
    if own.isalpha() and len(own.upper()) == 1 and own.upper() != own.lower():  # "ß": no pair
        return alt.upper() if own.isupper() else alt.lower()
    near = [chars[j] for j in (i - 1, i + 1) if 0 <= j < len(chars) and chars[j].isalpha()]
    if near and all(c.isupper() for c in near):
        return alt.upper()
    if near and all(c.islower() for c in near):
        return alt.lower()
    return alt


def check_languages(languages: Sequence[str]) -> None:
    """Raise :class:`UnknownLanguage` unless every language can be looked up here.

    wordfreq lists Chinese, Japanese and Korean but needs extra tokenisers
    (jieba, MeCab) to look words up in them; one lookup per language finds that
    now rather than in the first job.
    """
    import wordfreq  # lazy: only engines that correct words pay for the import

    known = set(wordfreq.available_languages())
    bad = [lang for lang in languages if lang not in known]
    if bad:
        raise UnknownLanguage(
            f"unknown lexicon language(s) {', '.join(bad)}; known: {', '.join(sorted(known))}"
        )
    for lang in languages:
        try:
            wordfreq.zipf_frequency("a", lang)
        except Exception as exc:  # ModuleNotFoundError for jieba / MeCab, typically
            raise UnknownLanguage(
                f"lexicon language {lang!r} cannot be used here: {type(exc).__name__}: {exc}"
            ) from exc


@lru_cache(maxsize=8)
def get_lexicon(languages: tuple[str, ...]) -> Lexicon:
    """One shared (read-only) lexicon per language set and process."""
    return Lexicon(languages)
