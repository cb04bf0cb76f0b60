"""Which characters and words are read wrong: confusions between truth and reading.

For every ground-truth line that detection found (covered >= 50%, as for
detection recall), the text read *there* is compared with its transcript:

1. **Pairing.** A ground-truth box and a predicted line are paired when their
   overlap is at least ``PAIR_SHARE`` of the smaller of the two (so a
   prediction split into fragments, and one prediction spanning several
   ground-truth segments of a printed line, both pair).
2. **Groups.** Boxes and predictions linked by pairs form one group (typically
   one printed line). Inside a group both sides are ordered along the reading
   direction of the predicted lines and joined with spaces, then aligned at
   character level (``align``: Levenshtein, every edit named). Where the
   predicted lines run past the ground truth by more than a text height (text
   the ground truth does not annotate), the read text may start / end there
   for free. Boxes overlapping each other by more than half along the line
   (SROIE has some segments annotated twice) are compared one at a time.
3. **Counting.** Each edit belongs to the ground-truth line it falls in:
   substitutions (truth char -> read char), deletions (truth char not read),
   insertions (read char the truth lacks). Spaces count as characters (a
   missing word space is an error of words). The space joining two
   ground-truth segments belongs to neither: reading it or not is no error.
   Word confusions come from aligning each line's words with the words read
   in its part of the alignment (``difflib``): every replaced run is counted as
   "truth words -> read words" (e.g. ``RM -> RH``, ``TOTAL: -> TOTAL :``).

Texts are upper-cased with runs of whitespace made one space, like the other
metrics. Matched lines that no single predicted line pairs with are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from statistics import median

import numpy as np

from ocrq.evaluation.align import Step, align
from ocrq.evaluation.geometry import Grid, Polygon, across, extent, overlap_areas, reading_axis

# A box and a prediction pair when they overlap by this share of the smaller one.
PAIR_SHARE = 0.5

Line = tuple[str, Polygon]


def normalise(text: str) -> str:
    return " ".join(text.upper().split())


def _ranked(counter: Counter) -> list:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True)
class Confusions:
    """Edit counts between matched ground-truth lines and what was read there."""

    substitutions: Counter[tuple[str, str]] = field(default_factory=Counter)
    deletions: Counter[str] = field(default_factory=Counter)
    insertions: Counter[str] = field(default_factory=Counter)
    words: Counter[tuple[str, str]] = field(default_factory=Counter)
    lines: int = 0  # matched ground-truth lines compared
    chars: int = 0  # their characters, spaces included

    @property
    def edits(self) -> int:
        return (self.substitutions.total() + self.deletions.total()
                + self.insertions.total())

    def __add__(self, other: Confusions) -> Confusions:
        return Confusions(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.words + other.words,
            self.lines + other.lines,
            self.chars + other.chars,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "chars": self.chars,
            "edits": self.edits,
            "substitutions": [{"truth": t, "read": r, "count": n}
                              for (t, r), n in _ranked(self.substitutions)],
            "deletions": [{"char": c, "count": n} for c, n in _ranked(self.deletions)],
            "insertions": [{"char": c, "count": n} for c, n in _ranked(self.insertions)],
            "words": [{"truth": t, "read": r, "count": n} for (t, r), n in _ranked(self.words)],
        }


def page_confusions(
    truth: Sequence[Line],
    predicted: Sequence[Line],
    covered: Sequence[bool],
    width: int,
    height: int,
) -> Confusions:
    """Confusions on one page; ``covered[i]``: truth line i counts as detected."""
    if not predicted or not any(covered):
        return Confusions()
    inter, area_t, area_p = overlap_areas(
        [b for _, b in truth], [p for _, p in predicted], Grid.of(width, height))
    smaller = np.minimum(area_t[:, None], area_p[None, :])
    pairs = np.argwhere((inter > 0) & (inter >= PAIR_SHARE * smaller))
    total = Confusions()
    for gts, preds in _groups([(int(t), int(p)) for t, p in pairs], len(truth)):
        if any(covered[g] for g in gts):
            total = total + _compare(gts, preds, truth, predicted, covered)
    return total


def _groups(pairs: list[tuple[int, int]], n_truth: int) -> list[tuple[list[int], list[int]]]:
    """Connected parts of the pair graph: (truth indexes, predicted indexes)."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t, p in pairs:
        parent[root(t)] = root(n_truth + p)
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for node in sorted(parent):
        gts, preds = groups.setdefault(root(node), ([], []))
        (gts if node < n_truth else preds).append(node if node < n_truth else node - n_truth)
    return list(groups.values())


def _compare(gts: list[int], preds: list[int], truth: Sequence[Line],
             predicted: Sequence[Line], covered: Sequence[bool]) -> Confusions:
    axis = reading_axis(predicted[preds[0]][1])
    spans = {g: extent(truth[g][1], axis) for g in gts}
    p_spans = {p: extent(predicted[p][1], axis) for p in preds}
    preds = sorted(preds, key=lambda p: sum(p_spans[p]))
    r_text = " ".join(t for t in (normalise(predicted[p][0]) for p in preds) if t)
    p_lo = min(lo for lo, _ in p_spans.values())
    p_hi = max(hi for _, hi in p_spans.values())
    total = Confusions()
    for chain in _chains(sorted(gts, key=lambda g: sum(spans[g])), spans):
        texts = {g: normalise(truth[g][0]) for g in chain}
        owner: list[int | None] = []  # truth char -> its line; None: the joining space
        for k, g in enumerate(chain):
            owner.extend([None] * (k > 0) + [g] * len(texts[g]))
        t_text = " ".join(texts[g] for g in chain)
        tol = median(across(truth[g][1], axis) for g in chain)
        steps = align(t_text, r_text, free_start=p_lo < spans[chain[0]][0] - tol,
                      free_end=p_hi > max(spans[g][1] for g in chain) + tol)
        counted = [g for g in chain if covered[g]]
        owners = _owners(steps, owner, r_text)
        subs, dels, ins = _count(steps, owners, owner, t_text, r_text, set(counted))
        words = _word_confusions(texts, _reads(steps, owners, r_text), counted)
        total = total + Confusions(subs, dels, ins, words, len(counted),
                                   sum(len(texts[g]) for g in counted))
    return total


def _chains(gts: list[int], spans: dict[int, tuple[float, float]]) -> list[list[int]]:
    """Split boxes ordered along the line into runs that follow one another.

    A box overlapping the previous one of a run by more than half (along the
    text) starts or joins another run: the ground truth sometimes has one
    segment twice (two boxes, one text), and each copy is compared on its own.
    """
    chains: list[list[int]] = []
    for g in gts:
        lo, hi = spans[g]
        for chain in chains:
            c_lo, c_hi = spans[chain[-1]]
            if min(hi, c_hi) - max(lo, c_lo) <= 0.5 * min(hi - lo, c_hi - c_lo):
                chain.append(g)
                break
        else:
            chains.append([g])
    return chains


def _owners(steps: list[Step], owner: list[int | None], r_text: str) -> list[int | None]:
    """The truth line each step belongs to (None: the joining space, read as a space
    or not read). Read characters between two lines go to the following line."""
    out: list[int | None] = []
    current: int | None = None
    for s in steps:
        if s.truth is not None:
            current = owner[s.truth]
            joiner_read = current is None and s.read is not None and r_text[s.read] != " "
            out.append(-1 if joiner_read else current)
        else:
            out.append(current if current is not None else -1)
    following: int | None = None
    for k in reversed(range(len(steps))):
        if out[k] == -1:
            out[k] = following
        elif out[k] is not None:
            following = out[k]
    return out


def _count(steps: list[Step], owners: list[int | None], owner: list[int | None],
           t_text: str, r_text: str, counted: set[int]
           ) -> tuple[Counter[tuple[str, str]], Counter[str], Counter[str]]:
    subs: Counter[tuple[str, str]] = Counter()
    dels: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    for s, g in zip(steps, owners, strict=True):
        if g not in counted:
            continue
        if s.read is None:
            dels[t_text[s.truth]] += 1  # type: ignore[index]
        elif s.truth is None or owner[s.truth] is None:  # a joining space read as a char
            ins[r_text[s.read]] += 1
        elif t_text[s.truth] != r_text[s.read]:
            subs[(t_text[s.truth], r_text[s.read])] += 1
    return subs, dels, ins


def _reads(steps: list[Step], owners: list[int | None], r_text: str) -> dict[int, str]:
    reads: dict[int, list[str]] = {}
    for s, g in zip(steps, owners, strict=True):
        if g is not None and s.read is not None:
            reads.setdefault(g, []).append(r_text[s.read])
    return {g: "".join(chars) for g, chars in reads.items()}


def _word_confusions(texts: dict[int, str], reads: dict[int, str],
                     counted: list[int]) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for g in counted:
        truth_words, read_words = texts[g].split(), reads.get(g, "").split()
        matcher = SequenceMatcher(None, truth_words, read_words, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "replace":
                found[(" ".join(truth_words[i1:i2]), " ".join(read_words[j1:j2]))] += 1
    return found
