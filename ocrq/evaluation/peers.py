"""Engines that ``ocrq eval`` and ``bench/engine.py`` compare, behind one small interface.

Every engine has a ``name`` and ``predict(image_bgr, path) -> Prediction`` where
the lines are (text, polygon in the pixels of the given image) and ``seconds``
is the wall time of that call alone. Backends are imported lazily, so a missing
peer only fails when asked for, with a message saying how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ocrq.engine import Engine
from ocrq.errors import OcrqError
from ocrq.settings import Settings


class PeerUnavailable(OcrqError):
    code = "peer_unavailable"


class UnknownEngine(OcrqError):
    code = "unknown_engine"


@dataclass
class Prediction:
    lines: list[tuple[str, list[list[float]]]]
    seconds: float
    # Per-stage milliseconds where the engine reports them (empty for Tesseract).
    stages_ms: dict[str, float] = field(default_factory=dict)


class EvalEngine(Protocol):
    name: str

    def predict(self, image: np.ndarray, path: Path | None = None) -> Prediction: ...


def resolve_threads(threads: int | None) -> int:
    """0 or None means all cores; the same number goes to every engine."""
    return threads if threads and threads > 0 else (os.cpu_count() or 1)


class OcrqEngine:
    """The in-process ocrq engine (the gate passes one pinned to a model version)."""

    def __init__(self, threads: int, *, engine: Engine | None = None, name: str = "ocrq"
                 ) -> None:
        self.name = name
        self._engine = engine or Engine.from_settings(
            Settings.from_env().with_(threads=threads))

    def predict(self, image: np.ndarray, path: Path | None = None) -> Prediction:
        start = time.perf_counter()
        page = self._engine.run(image, name=path.name if path else "image")
        seconds = time.perf_counter() - start
        lines = [(ln.text, [list(map(float, pt)) for pt in ln.polygon]) for ln in page.lines]
        return Prediction(lines, seconds, dict(page.timings_ms))


class RapidOcrEngine:
    """RapidOCR 1.4.4 called directly, with its defaults except the thread count."""

    name = "rapidocr"

    def __init__(self, threads: int) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR  # a peer, only for ocrq eval
        except ImportError as exc:
            raise PeerUnavailable(
                "rapidocr is not installed: pip install rapidocr-onnxruntime==1.4.4"
            ) from exc
        # Global keys are copied into the Det/Cls/Rec session options by RapidOCR.
        self._ocr = RapidOCR(intra_op_num_threads=threads)

    def predict(self, image: np.ndarray, path: Path | None = None) -> Prediction:
        start = time.perf_counter()
        result, elapse = self._ocr(image)
        seconds = time.perf_counter() - start
        lines = [
            (str(text), [[float(x), float(y)] for x, y in box])
            for box, text, _score in result or []
        ]
        stages = dict(zip(("det", "cls", "rec"), (e * 1000 for e in elapse or []), strict=False))
        return Prediction(lines, seconds, stages)


class TesseractEngine:
    """Tesseract 5 through its command line (``tsv`` output: words with boxes)."""

    name = "tesseract"

    def __init__(self, threads: int, lang: str = "eng") -> None:
        binary = shutil.which("tesseract")
        if binary is None:
            raise PeerUnavailable(
                "tesseract binary not found: apt-get install tesseract-ocr (Tesseract 5)"
            )
        self._binary = binary
        self._lang = lang
        # Tesseract's OpenMP parallelism is capped by this variable, not by a flag.
        # Passive waiting: with OpenMP's default spin-waiting, 2 threads on a busy
        # 2-core box ran ~15x slower than 1 (0.58 vs 8.6-11 s/page measured here),
        # which would make the peer look far worse than it is. Output is unchanged.
        self._env = {
            "OMP_WAIT_POLICY": "PASSIVE",
            **os.environ,
            "OMP_THREAD_LIMIT": str(threads),
        }

    def predict(self, image: np.ndarray, path: Path | None = None) -> Prediction:
        start = time.perf_counter()
        # BMP: the cheapest lossless encoding to hand the decoded pixels over stdin.
        ok, encoded = cv2.imencode(".bmp", image)
        if not ok:
            raise OcrqError("cannot encode image for tesseract")
        proc = subprocess.run(
            [self._binary, "stdin", "stdout", "-l", self._lang, "--psm", "3", "tsv"],
            input=encoded.tobytes(),
            capture_output=True,
            env=self._env,
            check=False,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise OcrqError(f"tesseract failed: {' '.join(message) or proc.returncode}")
        return Prediction(parse_tsv(proc.stdout.decode("utf-8", errors="replace")), seconds)


def parse_tsv(tsv: str) -> list[tuple[str, list[list[float]]]]:
    """Group Tesseract's word rows (level 5) into lines: text and bounding box."""
    groups: dict[tuple[str, ...], list[tuple[str, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(v) for v in cols[6:10])
        groups.setdefault(tuple(cols[1:5]), []).append(
            (cols[11].strip(), left, top, left + width, top + height)
        )
    lines: list[tuple[str, list[list[float]]]] = []
    for group in groups.values():
        x0 = float(min(w[1] for w in group))
        y0 = float(min(w[2] for w in group))
        x1 = float(max(w[3] for w in group))
        y1 = float(max(w[4] for w in group))
        text = " ".join(w[0] for w in group)
        lines.append((text, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    return lines


ENGINES: dict[str, Callable[[int], EvalEngine]] = {
    "ocrq": OcrqEngine,
    "rapidocr": RapidOcrEngine,
    "tesseract": TesseractEngine,
}


def build_engine(name: str, threads: int | None = None, **options: Any) -> EvalEngine:
    try:
        factory = ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise UnknownEngine(f"unknown engine {name!r}; known: {known}", engine=name) from None
    return factory(resolve_threads(threads), **options)
