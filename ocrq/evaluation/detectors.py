"""One loop for the model suite's detection tasks (checkboxes, tables): every
detector on every page of a labelled set, each page's result scored as it comes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from ocrq.errors import OcrqError
from ocrq.evaluation.dataset import DatasetError


class Score(Protocol):
    def add(self, name: str, found: Any, truth: Any, seconds: float) -> None: ...


def score_detectors(samples: Sequence[Any], detectors: Sequence[str], known: Sequence[str],
                    kind: str, build: Callable[[str], Callable[[np.ndarray], Any]],
                    new_score: Callable[[str], Score]) -> list[Any]:
    """``samples`` have ``path`` and ``truth``; ``build(name)`` makes a detector."""
    unknown = [d for d in detectors if d not in known]
    if unknown:
        raise OcrqError(f"unknown {kind} detector {unknown[0]!r}; known: {', '.join(known)}")
    # build every detector first: a missing peer fails before minutes of work
    built = {d: build(d) for d in detectors}
    scores = {d: new_score(d) for d in detectors}
    for sample in samples:
        image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{sample.path}: cannot be read as an image")
        for name, detect in built.items():
            t0 = time.perf_counter()
            found = detect(image)
            scores[name].add(sample.path.name, found, sample.truth, time.perf_counter() - t0)
    return list(scores.values())
