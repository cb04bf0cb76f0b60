"""Runs the OCR stages on one page, in-process or step by step.

``Engine.run`` is the composition of the four step methods; the distributed
pipeline calls the same steps from its tasks, so both read identical text.
Every step returns small JSON-able data (angles, polygons, texts, model
versions), never pixels.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ocrq.document import Line, PageResult
from ocrq.models.registry import Desired, ModelRegistry
from ocrq.models.runtimes.cost import Cost, costed, page_cost
from ocrq.models.states import LoadedModel
from ocrq.names import OCR_MODELS, ModelKind
from ocrq.settings import Settings
from ocrq.stages.deskew import estimate_skew, should_deskew, straighten
from ocrq.stages.detect import DetectOptions, InkLook, Region, detect
from ocrq.stages.frames import Quad, line_crops, to_submitted
from ocrq.stages.leaders import NO_LEADER, find_leaders, reach_out
from ocrq.stages.lexicon import get_lexicon
from ocrq.stages.recognize import RecognizeOptions, recognize
from ocrq.stages.reorder import reading_order
from ocrq.stages.rotate import classify_lines, classify_pages, lines_run_sideways, rotate_image
from ocrq.stages.second_look import WeakRules, confirm
from ocrq.stages.sums import AmountOptions, Doubt, settle_lines


@dataclass(frozen=True)
class Rotated:
    """step_rotate: how far (clockwise) to turn the page to make it upright."""

    rotation: int
    confidence: float
    models: dict[str, int]
    ms: float
    cost: Cost = Cost()  # CPU and GPU seconds (runtimes/cost.py)


@dataclass(frozen=True)
class Detected:
    """step_detect: the lines of the upright page (in the frame of ``rotation``, then
    straightened by ``skew`` degrees when that is not 0: stages/deskew.py)."""

    rotation: int
    polygons: list[Quad]
    scores: list[float]
    flipped: list[bool]  # line reads upside down on its own evidence
    leaders: list[int]  # leader dots right of each line (stages/leaders.py)
    models: dict[str, int]
    ms: float
    skew: float = 0.0  # degrees (counter-clockwise) the upright page's text was turned
    cost: Cost = Cost()
    leader_reach: list[float] = field(default_factory=list)  # px past each line, to the last dot


@dataclass(frozen=True)
class Recognized:
    """step_recognize: (text, confidence) per line, in the order of the polygons."""

    texts: list[tuple[str, float]]
    models: dict[str, int]
    ms: float
    cost: Cost = Cost()
    doubts: list[list[Doubt]] = field(default_factory=list)  # per line (stages/sums.py)


@dataclass(frozen=True)
class EngineOptions:
    detect: DetectOptions = field(default_factory=lambda: DetectOptions(weak_thresh=0.3,
                                                                        ink_look=InkLook()))
    recognize: RecognizeOptions = field(default_factory=RecognizeOptions)
    use_rotation: bool = True  # page orientation model
    use_direction: bool = True  # per-line 180° model
    use_leaders: bool = True  # dot leaders right of a line become "." (stages/leaders.py)
    use_deskew: bool = True  # straighten a skewed page before reading it (stages/deskew.py)
    # The page's decimal separator and sums settle doubtful digits (stages/sums.py); None = off.
    amounts: AmountOptions | None = field(default_factory=AmountOptions)
    # Below this (degrees) a page is read as it is: scans lie within a degree
    # of level (the dev receipts within 0.9°) and read well so.
    deskew_min_degrees: float = 1.0
    rot_min_confidence: float = 0.5  # below this the page is left as it is
    flip_line_confidence: float = 0.98  # one line flipped on its own evidence
    min_line_confidence: float = 0.3  # drop recognised lines below this
    # A weak detection (stages/detect.py) is kept when recognition reads it with at
    # least this confidence: the second look that finds lone digits without
    # adding lines made of noise.
    weak_min_confidence: float = 0.98
    # ... or at least this, where it sits on the row of a line found outright (a
    # quantity beside its item, the colon of "key : value") and reads as a
    # letter, digit or colon, not as what a speck or a rule's end reads as.
    weak_row_min_confidence: float = 0.6
    weak_colon_min_confidence: float = 0.35  # ... or this for a colon (its shape says most)
    # ... read at the page's median line height and at least this share of it
    # wide (0 = as DB boxed it).
    weak_min_aspect: float = 0.7

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(recognize=RecognizeOptions(languages=settings.lexicon_languages,
                                              second_below=settings.second_reading))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


class Engine:
    def __init__(self, registry: ModelRegistry, options: EngineOptions | None = None) -> None:
        self.registry = registry
        self.options = options or EngineOptions()
        if self.options.recognize.languages:
            # A misspelt OCRQ_LEXICON fails here, at start-up, not in every job.
            get_lexicon(tuple(self.options.recognize.languages))

    @classmethod
    def from_settings(cls, settings: Settings, options: EngineOptions | None = None, *,
                      desired: Desired | None = None) -> Engine:
        """``desired``: model versions to serve first (a worker reads them before forking)."""
        options = options or EngineOptions.from_settings(settings)
        return cls(ModelRegistry.from_settings(settings, desired=desired), options)

    def preload(self) -> None:
        second = self.options.recognize.second_below > 0
        self.registry.preload([m for m in OCR_MODELS if second or m != ModelKind.STR2])

    # --- in-process ------------------------------------------------------------
    def run(self, image: np.ndarray, name: str = "") -> PageResult:
        r = self.step_rotate(image)
        d = self.step_detect(image, r.rotation)
        t = self.step_recognize(image, d.rotation, d.polygons, d.flipped, skew=d.skew)
        timings = {"rotate": r.ms, "detect": d.ms, "recognize": t.ms}
        models = {**r.models, **d.models, **t.models}
        h, w = image.shape[:2]
        return self.step_reorder(
            name, w, h, d.rotation, d.polygons, t.texts, models, timings, leaders=d.leaders,
            skew=d.skew, cost={"rotate": r.cost, "detect": d.cost, "recognize": t.cost},
            leader_reach=d.leader_reach, doubts=t.doubts,
        )

    # --- steps -----------------------------------------------------------------
    @costed
    def step_rotate(self, image: np.ndarray) -> Rotated:
        t0 = time.perf_counter()
        if not self.options.use_rotation:
            return Rotated(0, 1.0, {}, _ms(t0))
        model = self.registry.get(ModelKind.ROT)
        o = classify_pages(model, [image])[0]
        angle = o.angle if o.confidence >= self.options.rot_min_confidence else 0
        return Rotated(angle, round(o.confidence, 4), {ModelKind.ROT.value: model.version}, _ms(t0))

    @costed
    def step_detect(self, image: np.ndarray, rotation: int) -> Detected:
        """Detect lines on the upright page, then check its orientation and skew.

        The final ``rotation`` may differ from the one given: when most lines
        run up and down the page it is turned a further 90°, when most read
        upside down a further 180°, and detection runs again each time
        (:meth:`_orient`). A page turned by any multiple of 90° is read from
        exactly the pixels of the upright page, never from polygons mapped
        across (DB is not rotation-equivariant, so those differ). The skew is
        then measured on that upright page's lines; a clear one (``skew`` in
        the answer) is turned out and detection runs once more on the
        straightened page, whose frame the polygons are in. ``leaders`` counts
        the leader dots right of each line (stages/leaders.py), for
        step_reorder to append.
        """
        t0 = time.perf_counter()
        det = self.registry.get(ModelKind.STD)
        models = {ModelKind.STD.value: det.version}
        rotation, upright, regions, votes = self._orient(image, rotation, det, models)
        # Rounded: the angle travels in messages, and every worker must map the
        # polygons back with exactly the value this one used.
        skew = round(estimate_skew([r.polygon for r in regions if not r.weak]), 2)
        page = upright  # the pixels the leaders are counted on
        polygons = [r.polygon for r in regions]  # on page
        if self.options.use_deskew and should_deskew(skew, self.options.deskew_min_degrees):
            cut = straighten(upright, skew, around=polygons)
            page = cut.image
            regions = detect(det, [page], self.options.detect)[0]
            polygons = [r.polygon for r in regions]
            # On the whole straightened page, which to_upright maps back, and rounded
            # as reported: the votes see exactly the crops recognition will read.
            shift = np.asarray(cut.offset, np.float64)
            regions = [replace(r, polygon=np.round(r.polygon + shift, 1).astype(np.float32))
                       for r in regions]
            votes = self._directions(upright, regions, models, skew)
        else:
            skew = 0.0
        regions, polygons, votes = self._confirm(upright, regions, polygons, votes, skew)
        limit = self.options.flip_line_confidence
        flipped = [f and c >= limit for f, c in votes] if votes else [False] * len(polygons)
        found = [NO_LEADER] * len(polygons)
        if self.options.use_leaders and polygons:  # level lines: on the straightened page
            found = [NO_LEADER if f else lead for lead, f in
                     zip(find_leaders(page, polygons), flipped, strict=True)]
        return Detected(
            rotation=rotation, flipped=flipped, models=models, ms=_ms(t0), skew=skew,
            polygons=[np.round(r.polygon.astype(np.float64), 1).tolist() for r in regions],
            scores=[round(r.score, 4) for r in regions],
            leaders=[lead.dots for lead in found], leader_reach=[lead.reach for lead in found],
        )

    def _orient(self, image: np.ndarray, rotation: int, det: LoadedModel,
                models: dict[str, int]
                ) -> tuple[int, np.ndarray, list[Region], list[tuple[bool, float]]]:
        """The final quarter turn: (rotation, upright page, its lines, their votes).

        Lines running up and down the page: the page model was a quarter off
        (it is on some skewed photos); turned 90° further, the line vote then
        settles whether that was the right way or half a turn from it.
        """
        upright = rotate_image(image, rotation)
        regions = detect(det, [upright], self.options.detect)[0]
        if self.options.use_direction and lines_run_sideways(
                [r.polygon for r in regions if not r.weak]):
            rotation = (rotation + 90) % 360
            upright = rotate_image(image, rotation)
            regions = detect(det, [upright], self.options.detect)[0]
        votes = self._directions(upright, regions, models, 0.0)
        strong = [v for v, r in zip(votes, regions, strict=False) if not r.weak]
        if sum(c for f, c in strong if f) > sum(c for f, c in strong if not f):
            rotation = (rotation + 180) % 360
            upright = rotate_image(image, rotation)
            regions = detect(det, [upright], self.options.detect)[0]
            votes = self._directions(upright, regions, models, 0.0)
        return rotation, upright, regions, votes

    def _confirm(self, upright: np.ndarray, regions: list[Region], polygons: list[np.ndarray],
                 votes: list[tuple[bool, float]], skew: float
                 ) -> tuple[list[Region], list[np.ndarray], list[tuple[bool, float]]]:
        """Weak detections kept only where recognition reads them well enough (on
        the crops it will read; stages/second_look.py); the lists filtered alike."""
        if not any(r.weak for r in regions):
            return regions, polygons, votes
        o = self.options
        rules = WeakRules(o.weak_min_confidence, o.weak_row_min_confidence, o.weak_min_aspect,
                          o.weak_colon_min_confidence)
        return confirm(upright, regions, polygons, votes, skew,
                       self.registry.get(ModelKind.STR), o.recognize, rules)

    def _directions(self, upright: np.ndarray, regions: Sequence[Region],
                    models: dict[str, int], skew: float) -> list[tuple[bool, float]]:
        """(upside down, confidence) per line from the line-direction model, on the
        crops recognition will read (the model is sensitive to a crop's exact
        pixels); adds its version to ``models`` when it ran."""
        if not self.options.use_direction or not regions:
            return []
        dmodel = self.registry.get(ModelKind.DIR)
        models[ModelKind.DIR.value] = dmodel.version
        return classify_lines(dmodel, line_crops(upright, [r.polygon for r in regions], skew))

    @costed
    def step_recognize(
        self,
        image: np.ndarray,
        rotation: int,
        polygons: Sequence[Sequence[Sequence[float]]],
        flipped: Sequence[bool] | None = None,
        languages: Sequence[str] | None = None,
        skew: float = 0.0,
        second_reading: float | None = None,
    ) -> Recognized:
        """Read the given lines; the answer for a line never depends on the others.

        ``languages``/``second_reading``: a plan's ``recognize.lexicon`` ([]: no word
        correction) and ``recognize.second_reading`` (0: none) for this call. ``rotation``
        and ``skew`` are step_detect's: the polygons are on that page.
        """
        t0 = time.perf_counter()
        opts = self.options.recognize
        if languages is not None:
            opts = replace(opts, languages=tuple(languages))
        if second_reading is not None:
            opts = replace(opts, second_below=float(second_reading))
        model = self.registry.get(ModelKind.STR)
        models = {ModelKind.STR.value: model.version}
        if not polygons:
            return Recognized([], models, _ms(t0))
        crops = line_crops(rotate_image(image, rotation), polygons, skew)
        if flipped:
            crops = [np.ascontiguousarray(c[::-1, ::-1]) if f else c
                     for c, f in zip(crops, flipped, strict=True)]
        second = self.registry.get(ModelKind.STR2) if opts.second_below > 0 else None
        if second is not None:  # the words it reads again: stages/fusion.py
            models[ModelKind.STR2.value] = second.version
        results = recognize(model, crops, opts, second)
        texts = [(r.text, round(r.confidence, 4)) for r in results]
        return Recognized(texts, models, _ms(t0), doubts=[list(r.doubts) for r in results])

    def step_reorder(
        self,
        name: str,
        width: int,
        height: int,
        rotation: int,
        polygons: Sequence[Sequence[Sequence[float]]],
        texts: Sequence[tuple[str, float]],
        models: dict[str, int],
        timings_ms: dict[str, float],
        leaders: Sequence[int] | None = None,
        skew: float = 0.0,
        cost: Mapping[str, Cost] | None = None,
        leader_reach: Sequence[float] | None = None,
        doubts: Sequence[Sequence[Doubt]] | None = None,
    ) -> PageResult:
        """Assemble the page; ``leaders``: dots to append to each line (step_detect), whose
        polygon is drawn out ``leader_reach`` px to the last dot (none given: as detected);
        ``cost``: the earlier steps' (the result's ``cost`` adds reorder's and the total);
        ``doubts``: step_recognize's, for the page's sums to settle digits. ``polygons``
        are on the page step_detect read (turned by ``rotation``, straightened by
        ``skew``); the result's are on the image as submitted.
        """
        t0, cpu0 = time.perf_counter(), time.process_time()
        if leaders:
            texts = [(t[0] + "." * int(n), t[1]) if n and t[0].strip() else t
                     for t, n in zip(texts, leaders, strict=True)]
        keep = [i for i, (text, conf) in enumerate(texts)
                if text.strip() and float(conf) >= self.options.min_line_confidence]
        quads = [np.asarray(polygons[i], np.float32) for i in keep]
        placements = reading_order(quads)
        if doubts and len(doubts) == len(texts) and self.options.amounts is not None:
            texts = settle_lines(texts, doubts, keep, [p.order for p in placements],
                                 [p.line for p in placements], self.options.amounts)
        lines = []
        for i, q, p in zip(keep, quads, placements, strict=True):
            # Drawn out after the reading order: that is the detected lines' order.
            q = reach_out(q, leader_reach[i]) if leader_reach else q
            original = to_submitted(q, rotation, skew, width, height)
            lines.append(Line(
                text=str(texts[i][0]),
                confidence=float(texts[i][1]),
                polygon=np.round(original.astype(np.float64), 1).tolist(),
                order=p.order, block=p.block, line=p.line,
            ))
        lines.sort(key=lambda ln: ln.order)
        timings = {**timings_ms, "reorder": _ms(t0)}
        # Pure host work: no GPU (and no Measure, whose meter nothing would add to).
        steps = {**(cost or {}), "reorder": Cost(time.process_time() - cpu0, 0.0)}
        return PageResult(name, width, height, rotation, lines, dict(models), timings,
                          cost=page_cost(steps))
