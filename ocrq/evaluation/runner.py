"""Run engines over a labelled dataset and score them (the body of ``ocrq eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from tqdm import tqdm

from ocrq.evaluation.dataset import Sample
from ocrq.evaluation.metrics import CorpusScore, PageScore, score_page
from ocrq.evaluation.peers import EvalEngine


@dataclass
class EngineResult:
    engine: str
    pages: list[PageScore]

    @cached_property
    def corpus(self) -> CorpusScore:
        return CorpusScore.of(self.pages)

    def to_dict(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            **self.corpus.to_dict(),
            "per_page": [p.to_dict() for p in self.pages],
        }


def evaluate(
    engines: Sequence[EvalEngine],
    samples: Sequence[Sample],
    *,
    progress: bool = False,
    warm_up: bool = True,
) -> list[EngineResult]:
    """Score every engine on every sample; one result per engine, in order.

    The engines take turns page by page: each image is decoded once, and a
    change in background load hits all engines alike, so seconds per page stay
    comparable within one run. With ``warm_up`` each engine first reads the
    first image untimed, so lazy model loading and first-call allocations do
    not land in seconds per page.
    """
    if warm_up and samples:
        first = samples[0].load()
        for engine in engines:
            engine.predict(first, samples[0].path)
    pages: list[list[PageScore]] = [[] for _ in engines]
    bar = tqdm(total=len(samples) * len(engines), unit="page", disable=not progress, leave=False)
    with bar:
        for sample in samples:
            image = sample.load()
            height, width = image.shape[:2]
            truth = sample.truth()
            for engine, scores in zip(engines, pages, strict=True):
                bar.set_description(f"{engine.name} {sample.name}")
                pred = engine.predict(image, sample.path)
                scores.append(
                    score_page(sample.name, pred.lines, truth, width, height, pred.seconds)
                )
                bar.update()
    return [EngineResult(e.name, p) for e, p in zip(engines, pages, strict=True)]


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
