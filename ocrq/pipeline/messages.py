"""The typed messages stage tasks pass each other, and their JSON form on the broker.

Every message carries references (the image's blob key, polygons, model
versions), never pixels. Each type is serialised explicitly at the Celery
boundary (``to_message`` / ``from_message``): tasks receive plain JSON and
turn it into these dataclasses first thing, so a missing field fails loudly
in the task that got it, not three steps later.

The first dict argument of every stage task has a top-level ``job_id``
(:func:`job_id_of`): the redelivery guard, the threads pool's time limits,
bid pinning and the broker rescue all find a message's job that way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Self, TypeVar

from ocrq.engine import Detected, Quad
from ocrq.errors import OcrqError
from ocrq.models.runtimes.cost import NO_COST, Cost
from ocrq.stages.amounts import Doubt
from ocrq.stages.fusion import is_threshold

T = TypeVar("T")


class InvalidMessage(OcrqError):
    """A task got a message that does not have the fields its type needs."""

    code = "invalid_message"


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls(**data)`` on the fields cls knows; a missing field is an InvalidMessage.

    Unknown keys are ignored: during a rolling update an older producer's
    message may carry a field this version no longer reads.
    """
    if not isinstance(data, Mapping):
        raise InvalidMessage(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise InvalidMessage(f"{cls.__name__}: {exc}") from exc


class _Message:
    """A dataclass that goes on the broker as a JSON object of its fields."""

    def to_message(self) -> dict[str, Any]:
        # What dataclasses.asdict returns (tuples go as JSON arrays), at a fraction of
        # its cost: asdict deep-copies every leaf, 2 ms for a context carrying a
        # page's 80 polygons, paid at intake and by every step (issue 14).
        return _plain(self)  # type: ignore[no-any-return]


_LEAVES = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """``value`` with every dataclass in it turned into a dict of its fields and the
    containers around them rebuilt, as ``dataclasses.asdict`` does; the str, int,
    float, bool and None leaves shared instead of deep-copied (they are immutable)."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is list or kind is tuple:
        if all(type(v) in _LEAVES for v in value):  # a polygon's point, a text's pair
            return kind(value)
        return kind(_plain(v) for v in value)
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return kind(*(_plain(v) for v in value))
    if isinstance(value, dict):
        return kind((_plain(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return kind(_plain(v) for v in value)
    return copy.deepcopy(value)  # another leaf type: copied, as asdict copies it


def _lexicon(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _threshold(value: object) -> float | None:
    """A plan's second-reading threshold from a message: a number in [0, 1] or None."""
    if value is None:
        return None
    if not is_threshold(value):
        raise InvalidMessage(f"second_reading must be a number from 0 to 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Lines:
    """What detection found, carried to reorder: polygons, 180° flags, leader dots."""

    polygons: list[Quad]
    flipped: list[bool]
    leaders: list[int]
    # Detected.leader_reach; empty from a producer that predates it (no line drawn out).
    leader_reach: list[float] = field(default_factory=list)

    @classmethod
    def from_detected(cls, d: Detected) -> Lines:
        return cls(d.polygons, d.flipped, d.leaders, d.leader_reach)


@dataclass(frozen=True)
class RecognitionRef(_Message):
    """What a recognition batch needs besides its polygons."""

    job_id: str
    bid: str
    image_key: str
    name: str
    rotation: int
    lexicon: tuple[str, ...] | None = None  # None: the worker's OCRQ_LEXICON
    # Detected.skew: the polygons are on the page straightened by this much.
    # Defaults to 0 so a message from a producer that predates it still reads.
    skew: float = 0.0
    second_reading: float | None = None  # None: the worker's OCRQ_SECOND_READING

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Self:
        ref = _build(cls, data)
        return replace(ref, lexicon=_lexicon(ref.lexicon), skew=float(ref.skew),
                       second_reading=_threshold(ref.second_reading))


@dataclass(frozen=True)
class JobContext(_Message):
    """Everything the steps of one job share; grows as the canvas runs.

    Intake fills the first block; rotate sets ``rotation``; detect sets
    ``lines`` and ``skew`` (and the final ``rotation``); every step adds its
    model versions and timing.
    """

    job_id: str
    bid: str
    tid: str
    image_key: str
    name: str
    width: int
    height: int
    queues: dict[str, str]  # step -> queue, resolved once at intake
    batch_lines: int  # most lines one recognition task reads
    callback: bool  # the job has a callback_url: send a webhook when it ends
    lexicon: tuple[str, ...] | None = None  # the plan's recognize.lexicon, if it sets one
    second_reading: float | None = None  # the plan's recognize.second_reading, if set
    amounts: bool = True  # the plan's recognize.amounts: the page's sums settle digits
    rotate_here: bool = False  # detect runs rotate first (both on one queue)
    stages: tuple[str, ...] = ()  # the plan's plug-in stages, run in turn after reorder
    rotation: int | None = None
    skew: float = 0.0  # Detected.skew: recognise and reorder on the straightened page
    models: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)  # step -> Cost.to_dict()
    lines: Lines | None = None
    # A document's page (ocrq/documents.py): its 0-based index and the page count;
    # image_key then names the page. None / 0 for an image.
    page: int | None = None
    pages: int = 0
    # Intake only: each page's (width, height); canvas.start makes one chain per page.
    page_sizes: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Self:
        ctx = _build(cls, data)
        lines = ctx.lines
        if isinstance(lines, Mapping):
            lines = _build(Lines, lines)
        return replace(ctx, lexicon=_lexicon(ctx.lexicon), lines=lines, skew=float(ctx.skew),
                       second_reading=_threshold(ctx.second_reading),
                       stages=tuple(str(s) for s in ctx.stages),
                       page_sizes=tuple((int(w), int(h)) for w, h in ctx.page_sizes))

    def after(self, step: str, models: Mapping[str, int], ms: float, cost: Cost = NO_COST,
              **changes: Any) -> JobContext:
        """This context once ``step`` ran: its model versions, time and cost added."""
        return replace(self, models={**self.models, **models},
                       timings_ms={**self.timings_ms, str(step): ms},
                       cost={**self.cost, str(step): cost.to_dict()}, **changes)

    def costs(self, recognize_step: str, batches: Sequence[BatchResult]) -> dict[str, Cost]:
        """The steps' costs so far, recognition's summed over its batches (each
        batch's ran in its own task, maybe its own process)."""
        out = {k: Cost.from_dict(v) for k, v in self.cost.items()}
        out[recognize_step] = sum((Cost(b.cpu_s, b.gpu_s) for b in batches), Cost())
        return out

    def ref(self) -> RecognitionRef:
        if self.rotation is None:
            raise InvalidMessage(f"job {self.job_id}: recognition before the page's rotation")
        return RecognitionRef(self.job_id, self.bid, self.image_key, self.name, self.rotation,
                              self.lexicon, self.skew, self.second_reading)


@dataclass(frozen=True)
class BatchResult(_Message):
    """One recognition batch's answer (a chord header result)."""

    index: int
    texts: list[tuple[str, float]]
    models: dict[str, int]
    ms: float
    cancelled: bool = False  # the job had ended: the batch did nothing
    # The batch's Cost (0 from a producer that predates it).
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    # Per line: runner-up digits of its amounts (stages/amounts.py); [] from a
    # producer that predates them (the page's sums then settle nothing).
    doubts: list[list[Doubt]] = field(default_factory=list)

    @classmethod
    def skipped(cls, index: int) -> BatchResult:
        return cls(index, [], {}, 0.0, cancelled=True)

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Self:
        res = _build(cls, data)
        return replace(res, texts=[(str(t), float(c)) for t, c in res.texts],
                       cpu_s=float(res.cpu_s), gpu_s=float(res.gpu_s),
                       doubts=_doubts(res.doubts))


def _doubts(raw: Any) -> list[list[Doubt]]:
    """A batch's doubts as (index, glyph, ratio) tuples; [] where any entry is not
    one (a producer that changed their shape): they only advise the page's sums, so
    an odd entry costs the settling, never the job."""
    try:
        return [[(int(at), str(d), float(r)) for at, d, r in line] for line in raw]
    except (TypeError, ValueError):
        return []


def job_id_of(args: Iterable[Any] | None) -> str | None:
    """The job a stage task works for: the ``job_id`` of its first dict argument."""
    for arg in args or ():
        if isinstance(arg, Mapping) and isinstance(arg.get("job_id"), str):
            return str(arg["job_id"])
    return None


def bid_of(args: Iterable[Any] | None) -> str | None:
    """The business a stage task works for (every context and ref carries it)."""
    for arg in args or ():
        if isinstance(arg, Mapping) and "job_id" in arg:
            bid = arg.get("bid")
            return str(bid) if bid else None
    return None
