"""Reader for labelled OCR data in the ``manifest.jsonl`` format of ``shared/eval``.

One JSON object per line: ``{"image": "x.jpg", "lines": [{"text": ..., "box":
[[x, y] x 4]}, ...]}``; image paths are relative to the manifest's folder.
Extra keys (source, license) are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from ocrq.errors import OcrqError

MANIFEST = "manifest.jsonl"
T = TypeVar("T")


class DatasetError(OcrqError):
    """The manifest or one of its images cannot be read."""

    code = "invalid_dataset"


@dataclass(frozen=True)
class TruthLine:
    text: str
    box: list[list[float]]


@dataclass(frozen=True)
class Sample:
    path: Path
    lines: list[TruthLine]

    @property
    def name(self) -> str:
        return self.path.name

    def truth(self) -> list[tuple[str, list[list[float]]]]:
        return [(ln.text, ln.box) for ln in self.lines]

    def load(self) -> np.ndarray:
        """Decode the image as BGR uint8 (the same array goes to every engine)."""
        try:
            data = np.fromfile(self.path, dtype=np.uint8)
        except OSError as exc:
            raise DatasetError(f"{self.path}: {exc.strerror or exc}", image=str(self.path)) from exc
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise DatasetError(f"{self.path}: not a decodable image", image=str(self.path))
        return image


def manifest_rows(folder: str | Path, parse: Callable[[Path, dict[str, Any]], T | None],
                  limit: int | None = None, what: str = "bad manifest row") -> list[T]:
    """Every row of ``folder/manifest.jsonl`` (or a manifest file given directly) read
    by ``parse(the manifest's folder, row)``; None skips a row. Reading stops once
    ``limit`` rows are kept; a row ``parse`` cannot read is a :class:`DatasetError`
    naming its line."""
    path = Path(folder)
    manifest = path / MANIFEST if path.is_dir() else path
    if not manifest.is_file():
        raise DatasetError(f"no {MANIFEST} in {path}", path=str(path))
    out: list[T] = []
    for number, raw in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        if limit is not None and len(out) >= limit:
            break
        try:
            item = parse(manifest.parent, json.loads(raw))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DatasetError(f"{manifest}:{number}: {what} ({exc})",
                               path=str(manifest)) from exc
        if item is not None:
            out.append(item)
    return out


def load_manifest(folder: str | Path, limit: int | None = None) -> list[Sample]:
    """Read ``folder/manifest.jsonl`` (or a manifest file given directly)."""

    def sample(base: Path, row: dict[str, Any]) -> Sample:
        lines = [TruthLine(str(ln["text"]), [[float(x), float(y)] for x, y in ln["box"]])
                 for ln in row["lines"]]
        return Sample(base / row["image"], lines)

    return manifest_rows(folder, sample, limit)
