"""Sub-90° skew: estimated from the detected lines and turned out before reading.

Pages are rendered (tests/fixtures.py) and turned by a known angle; the
engine must measure it, read the same text as on the level page, and give
polygons on the skewed image as submitted, in both the in-process run and the
step-by-step path the distributed pipeline takes through its messages.
"""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from ocrq.engine import Engine, EngineOptions
from ocrq.models.runtimes.cost import NO_COST
from ocrq.pipeline.messages import BatchResult, JobContext, Lines, RecognitionRef
from ocrq.stages.deskew import estimate_skew, should_deskew, straighten, to_upright
from ocrq.stages.rotate import lines_run_sideways
from tests.fixtures import rotate


def _quad(cx: float, cy: float, length: float, height: float, degrees: float) -> np.ndarray:
    """A box centred at (cx, cy), its long side turned counter-clockwise by ``degrees``,
    clockwise from its top-left (as the detector gives them)."""
    t = np.radians(degrees)
    along = np.array([np.cos(t), -np.sin(t)]) * length / 2  # image y grows downwards
    across = np.array([np.sin(t), np.cos(t)]) * height / 2
    c = np.array([cx, cy])
    return np.array([c - along - across, c + along - across, c + along + across,
                     c - along + across], np.float32)


def _turn_matrix(w: int, h: int, degrees: float) -> np.ndarray:
    """The affine map of tests.fixtures.rotate (counter-clockwise, enlarged canvas)."""
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    m[0, 2] += int(round(h * sin + w * cos)) / 2 - w / 2
    m[1, 2] += int(round(h * cos + w * sin)) / 2 - h / 2
    return m


# --- the stage on its own ---------------------------------------------------------------
@pytest.mark.parametrize("degrees", [-12.0, -3.5, 0.0, 6.0, 10.0])
def test_estimate_is_the_long_lines_direction(degrees: float) -> None:
    lines = [_quad(300, 60 + 40 * i, 400, 30, degrees) for i in range(6)]
    prices = [_quad(620, 60 + 40 * i, 60, 30, degrees + 25) for i in range(6)]  # nearly square
    stamp = [_quad(300, 500, 300, 60, degrees + 40)]  # one long box at another angle
    assert estimate_skew(lines + prices + stamp) == pytest.approx(degrees, abs=1e-3)


def test_no_estimate_without_enough_long_lines() -> None:
    assert estimate_skew([]) == 0.0
    assert estimate_skew([_quad(100, 100, 400, 30, 8.0), _quad(100, 200, 400, 30, 8.0)]) == 0.0
    assert estimate_skew([_quad(100, 40 * i, 50, 30, 8.0) for i in range(10)]) == 0.0


def test_only_a_clear_skew_is_turned_out() -> None:
    assert not should_deskew(0.8, 1.0) and not should_deskew(-0.99, 1.0)
    assert should_deskew(1.0, 1.0) and should_deskew(-10.0, 1.0)
    assert not should_deskew(40.0, 1.0)  # no longer a skew the boxes measure


@pytest.mark.parametrize(("degrees", "sideways"),
                         [(0.0, False), (10.0, False), (-30.0, False), (80.0, True),
                          (90.0, True), (-100.0, True)])
def test_lines_running_up_the_page_are_told_apart(degrees: float, sideways: bool) -> None:
    lines = [_quad(300, 300 + 40 * i, 400, 30, degrees) for i in range(5)]
    assert lines_run_sideways(lines) is sideways
    # A few vertical boxes (a side note, a barcode's digits) do not turn a page.
    across = [_quad(300, 300 + 40 * i, 400, 30, 0.0) for i in range(5)]
    assert not lines_run_sideways(across + [_quad(50, 300, 400, 30, 90.0)] * 3)


@pytest.mark.parametrize("skew", [-10.0, 7.0])
def test_to_upright_inverts_the_straightening(skew: float) -> None:
    page = np.full((300, 500, 3), 255, np.uint8)
    dots = [(40, 30), (250, 150), (460, 270)]
    for x, y in dots:
        cv2.circle(page, (x, y), 3, (0, 0, 0), -1)
    whole = straighten(page, skew)
    assert whole.offset == (0, 0)
    assert whole.image.shape[0] > page.shape[0] and whole.image.shape[1] > page.shape[1]
    assert _dots(whole.image, whole.offset, skew) == sorted(dots)  # nothing cut
    # Cut around the middle dot only: the same page, offset, a fraction of the pixels.
    box = np.array([[240, 140], [260, 140], [260, 160], [240, 160]], np.float32)
    cut = straighten(page, skew, around=[box])
    assert cut.image.shape[0] * cut.image.shape[1] < 0.1 * page.shape[0] * page.shape[1]
    assert _dots(cut.image, cut.offset, skew) == [(250, 150)]
    assert straighten(page, 0.0).image is page  # level: the very same pixels


def _dots(image: np.ndarray, offset: tuple[int, int], skew: float) -> list[tuple[int, int]]:
    """Centres of the dark dots on part of a straightened 500x300 page, mapped back."""
    _, _, _, centres = cv2.connectedComponentsWithStats((image[:, :, 0] < 128).astype(np.uint8))
    back = to_upright(centres[1:] + np.array(offset), skew, 500, 300)
    return sorted((int(round(x)), int(round(y))) for x, y in back)


# --- the engine ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def level(engine: Engine, invoice_page: np.ndarray):  # noqa: ANN201
    return engine.run(invoice_page, "level.png")


@pytest.mark.parametrize("degrees", [7.0, -7.0, 10.0, -10.0])
def test_skewed_page_is_measured_and_reads_like_the_level_page(
        engine: Engine, invoice_page: np.ndarray, level, degrees: float) -> None:  # noqa: ANN001
    skewed = rotate(invoice_page, degrees)
    d = engine.step_detect(skewed, 0)
    assert d.rotation == 0
    assert d.skew == pytest.approx(degrees, abs=0.5)
    page = engine.run(skewed, "skewed.png")
    assert page.text() == level.text()
    assert (page.width, page.height) == (skewed.shape[1], skewed.shape[0])
    # Polygons are on the skewed image as submitted, still clockwise from the
    # text's top-left: each is the level page's box carried along by the turn.
    m = _turn_matrix(invoice_page.shape[1], invoice_page.shape[0], degrees)
    for a, b in zip(level.lines, page.lines, strict=True):
        expect = np.array(a.polygon) @ m[:, :2].T + m[:, 2]
        assert np.abs(expect - np.array(b.polygon)).max() < 10, (a.text, b.polygon)
    # ... and they hold the ink: almost every dark pixel lies in one of them.
    ink = skewed[:, :, 0] < 128
    covered = np.zeros(ink.shape, np.uint8)
    cv2.fillPoly(covered, [np.round(ln.polygon).astype(np.int32) for ln in page.lines], 1)
    assert ink[covered > 0].sum() / ink.sum() > 0.98


def test_level_page_is_read_exactly_as_without_deskew(
        engine: Engine, invoice_page: np.ndarray) -> None:
    plain = Engine(engine.registry, EngineOptions(use_deskew=False))
    for image in (invoice_page, rotate(invoice_page, 0.5)):  # a scan's slight tilt
        d, p = engine.step_detect(image, 0), plain.step_detect(image, 0)
        assert d.skew == p.skew == 0.0
        assert replace(d, ms=0.0, cost=NO_COST) == replace(p, ms=0.0, cost=NO_COST)  # all but time


# --- the pipeline's messages -----------------------------------------------------------
def test_skew_travels_through_the_job_messages(
        engine: Engine, invoice_page: np.ndarray) -> None:
    """The steps as the distributed pipeline runs them, every hop through JSON:
    detect's skew reaches recognition (via the ref) and reorder (via the context),
    and the page reads exactly as in-process."""
    skewed = rotate(invoice_page, -8.0)
    h, w = skewed.shape[:2]
    ctx = JobContext(job_id="j1", bid="default", tid="ocr", image_key="k", name="s.png",
                     width=w, height=h, queues={}, batch_lines=3, callback=False, rotation=0)
    d = engine.step_detect(skewed, ctx.rotation or 0)
    ctx = ctx.after("detect", d.models, d.ms, rotation=d.rotation, skew=d.skew,
                    lines=Lines.from_detected(d))

    def hop(msg: dict) -> dict:
        return json.loads(json.dumps(msg))

    ctx = JobContext.from_message(hop(ctx.to_message()))
    assert ctx.skew == d.skew != 0.0
    ref = RecognitionRef.from_message(hop(ctx.ref().to_message()))
    assert ref.skew == d.skew
    lines = ctx.lines
    assert lines is not None
    texts: list[tuple[str, float]] = []
    doubts: list = []
    for a in range(0, len(lines.polygons), ctx.batch_lines):
        b = a + ctx.batch_lines
        t = engine.step_recognize(skewed, ref.rotation, lines.polygons[a:b],
                                  lines.flipped[a:b], skew=ref.skew)
        res = BatchResult.from_message(hop(BatchResult(a, t.texts, t.models, t.ms,
                                                       doubts=t.doubts).to_message()))
        texts += res.texts
        doubts += res.doubts
    page = engine.step_reorder(ctx.name, ctx.width, ctx.height, ctx.rotation or 0,
                               lines.polygons, texts, {}, {}, leaders=lines.leaders,
                               skew=ctx.skew, leader_reach=lines.leader_reach, doubts=doubts)
    direct = engine.run(skewed, "s.png")
    assert [(ln.text, ln.polygon, ln.order) for ln in page.lines] == [
        (ln.text, ln.polygon, ln.order) for ln in direct.lines]


def test_a_message_without_skew_reads_as_level() -> None:
    """A producer from before the field (rolling update) sends none: 0, not an error."""
    ref = {"job_id": "j1", "bid": "default", "image_key": "k", "name": "p.png", "rotation": 90}
    assert RecognitionRef.from_message(ref).skew == 0.0
    ctx = {"job_id": "j1", "bid": "default", "tid": "ocr", "image_key": "k", "name": "p.png",
           "width": 10, "height": 20, "queues": {}, "batch_lines": 8, "callback": False}
    assert JobContext.from_message(ctx).skew == 0.0
    assert JobContext.from_message({**ctx, "skew": 5}).skew == 5.0


def test_on_a_straightened_page_every_line_is_looked_at_in_one_frame(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """find_leaders gets the straightened page and every polygon on it: the weak
    boxes the second look keeps (grown to a cell) too, not on the page before the cut."""
    import ocrq.engine as engine_module
    from tests.fixtures import render_page

    seen: dict[str, list[np.ndarray]] = {}
    find = engine_module.find_leaders

    def spy(page: np.ndarray, polygons, *args, **kwargs):  # noqa: ANN001, ANN202
        seen["polygons"] = [np.asarray(p, np.float64).copy() for p in polygons]
        return find(page, polygons, *args, **kwargs)

    monkeypatch.setattr(engine_module, "find_leaders", spy)
    page = render_page(["CASHIER          :   01", "TOTAL AMT       :   12.50",
                        "DATE  :  2024-01-01", "ITEM 1   x   2"], size=26, margin=60)
    d = engine.step_detect(rotate(page, 6.0), 0)
    assert d.skew and len(d.polygons) == len(seen["polygons"]) > 4
    # Detected's polygons are the same lines shifted by the cut's offset: one shift for all.
    shifts = {tuple(np.round((np.asarray(p) - q).mean(axis=0), 1))
              for p, q in zip(d.polygons, seen["polygons"], strict=True)}
    assert len(shifts) == 1, shifts
