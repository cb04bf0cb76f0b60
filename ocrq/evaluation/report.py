"""The sections ``ocrq eval`` prints after its main table, to show what to fix next.

Detection recall per ground-truth line length (one row per engine), the most
often missed lines, and each engine's most frequent confusions (top ``top`` of
substitutions, deletions, insertions and word confusions side by side).
``--json`` carries all of it, with every count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from itertools import zip_longest

from ocrq.evaluation.confusions import Confusions
from ocrq.evaluation.metrics import COVERAGE_THRESHOLD, LENGTH_BUCKETS
from ocrq.evaluation.runner import EngineResult

SPACE = "␣"  # a space character in the confusion table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _char(c: str) -> str:
    return SPACE if c == " " else _cell(c)


def format_length_recall(results: Sequence[EngineResult]) -> str:
    labels = [label for label, _, _ in LENGTH_BUCKETS]
    rows = [
        "Detection recall by ground-truth line length (non-space characters; a line counts "
        f"when >= {COVERAGE_THRESHOLD:.0%} of its box is covered), covered/lines:",
        "",
        "| engine | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for r in results:
        by_length = r.corpus.by_length
        cells = [
            f"{c.recall:.3f} ({c.matched}/{c.true})" if c.true else "-"
            for c in (by_length[label] for label in labels)
        ]
        rows.append(f"| {r.engine} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_missed(result: EngineResult, top: int) -> str:
    corpus = result.corpus
    shown = ", ".join(f"{json.dumps(text, ensure_ascii=False)} x{n}"
                      for text, n in corpus.top_missed(top))
    return (f"Missed lines, {result.engine} ({corpus.boxes.true - corpus.boxes.matched} lines, "
            f"{len(corpus.missed)} distinct; most frequent, then shortest): {shown or '-'}")


def _top(counter: Counter, top: int) -> list:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def format_confusions(engine: str, conf: Confusions, top: int) -> str:
    rate = conf.edits / conf.chars if conf.chars else 0.0
    rows = [
        f"Top confusions, {engine}: {conf.lines} matched lines, {conf.chars} chars, "
        f"{conf.edits} char edits ({rate:.2%}); truth→read, {SPACE} = space:",
        "",
        "| # | substitution | n | deletion | n | insertion | n | words | n |",
        "|---:|---|---:|---|---:|---|---:|---|---:|",
    ]
    columns = zip_longest(
        [(f"{_char(t)}→{_char(r)}", n) for (t, r), n in _top(conf.substitutions, top)],
        [(_char(c), n) for c, n in _top(conf.deletions, top)],
        [(_char(c), n) for c, n in _top(conf.insertions, top)],
        [(f"{_cell(t)} → {_cell(r)}", n) for (t, r), n in _top(conf.words, top)],
        fillvalue=("", ""),
    )
    for rank, cells in enumerate(columns, start=1):
        rows.append(f"| {rank} | " + " | ".join(f"{k} | {n}" for k, n in cells) + " |")
    return "\n".join(rows)


def format_diagnostics(results: Sequence[EngineResult], top: int = 15) -> str:
    """Length recall, missed lines and confusions, as blank-line separated sections."""
    sections = [format_length_recall(results)]
    sections += [format_missed(r, top) for r in results]
    sections += [format_confusions(r.engine, r.corpus.confusions, top) for r in results]
    return "\n\n".join(sections)
