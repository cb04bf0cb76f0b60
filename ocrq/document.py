"""The result document: what `ocrq run --json`, the API and webhooks return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Line:
    text: str
    confidence: float
    # Four points, clockwise from the top-left of the text, in pixels of the
    # image as submitted (before any rotation ocrq applied).
    polygon: list[list[float]]
    order: int  # reading order, 0-based
    block: int = 0  # column/paragraph block the fragment belongs to
    line: int = 0  # printed line index (fragments on one printed line share it)


@dataclass
class PageResult:
    image: str
    width: int
    height: int
    rotation: int  # degrees clockwise ocrq turned the page to read it (0/90/180/270)
    lines: list[Line] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    # CPU and GPU seconds per step and their total: {step: {"cpu_s", "gpu_s"}, "total": ...}
    # (ocrq/models/runtimes/cost.py says what each counts).
    cost: dict[str, dict[str, float]] = field(default_factory=dict)

    def text(self) -> str:
        """Plain text in reading order: fragments of a printed line joined by a space."""
        out: list[str] = []
        current: int | None = None
        for ln in sorted(self.lines, key=lambda x: x.order):
            if current is not None and ln.line == current:
                out[-1] += " " + ln.text
            else:
                out.append(ln.text)
            current = ln.line
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageResult:
        lines = [Line(**ln) for ln in data.get("lines", [])]
        return cls(
            image=data["image"],
            width=int(data["width"]),
            height=int(data["height"]),
            rotation=int(data.get("rotation", 0)),
            lines=lines,
            models={k: int(v) for k, v in data.get("models", {}).items()},
            timings_ms={k: float(v) for k, v in data.get("timings_ms", {}).items()},
            cost={k: {m: float(x) for m, x in v.items()}
                  for k, v in (data.get("cost") or {}).items()},
        )
