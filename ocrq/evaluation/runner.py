"""Run engines over a labelled dataset and score them (the body of ``ocrq eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrq.evaluation.dataset import Sample
from ocrq.evaluation.metrics import CorpusScore, PageScore, score_page
from ocrq.evaluation.peers import EvalEngine


@dataclass
class EngineResult:
    engine: str
    pages: list[PageScore]

    @property
    def corpus(self) -> CorpusScore:
        return CorpusScore.of(self.pages)

    def to_dict(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            **self.corpus.to_dict(),
            "per_page": [p.to_dict() for p in self.pages],
        }


def evaluate(
    engine: EvalEngine,
    samples: Sequence[Sample],
    *,
    progress: bool = False,
    warm_up: bool = True,
) -> EngineResult:
    """Score ``engine`` on every sample, in order.

    With ``warm_up`` the first image is run once untimed first, so lazy model
    loading and first-call allocations do not land in seconds per page.
    """
    from tqdm import tqdm

    if warm_up and samples:
        engine.predict(samples[0].load(), samples[0].path)
    pages: list[PageScore] = []
    bar = tqdm(samples, desc=engine.name, unit="page", disable=not progress, leave=False)
    for sample in bar:
        image = sample.load()
        pred = engine.predict(image, sample.path)
        height, width = image.shape[:2]
        pages.append(
            score_page(sample.name, pred.lines, sample.truth(), width, height, pred.seconds)
        )
    return EngineResult(engine.name, pages)


def format_table(results: Sequence[EngineResult]) -> str:
    """Markdown table, one row per engine (scores micro-averaged over pages)."""
    rows = [
        "| engine | pages | word P | word R | word F1 | char F1 | det recall | s/page |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r.corpus
        rows.append(
            f"| {r.engine} | {c.pages} | {c.words.precision:.3f} | {c.words.recall:.3f} | "
            f"{c.words.f1:.3f} | {c.chars.f1:.3f} | {c.boxes.recall:.3f} | "
            f"{c.seconds_per_page:.2f} |"
        )
    return "\n".join(rows)
