"""Host-work shortcuts in the stages (issue 11) give what the longer way gave."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocrq.stages import leaders
from ocrq.stages.detect import _box_score
from ocrq.stages.leaders import LeaderOptions, find_leaders
from ocrq.stages.recognize import ink_profile
from tests.fixtures import dots, label_with


def _leader_without_shortcut(gray: np.ndarray, quads: np.ndarray, i: int,
                             opts: LeaderOptions) -> int:
    """leaders._leader as it was: the strip is always labelled."""
    box = leaders._line_box(quads[i], gray.shape[0], opts)
    if box is None:
        return 0
    limit = leaders._search_limit(box, np.delete(quads, i, axis=0), gray.shape[1], opts)
    if limit - box.xr < 2 * box.height or box.xr - box.xl < 2:
        return 0
    ink = leaders._text_ink(gray[box.y0:box.y1, box.xl:box.xr])
    if ink is None:
        return 0
    thr, top, bottom = ink
    binary = (gray[box.y0:box.y1, box.xr:limit] < thr).astype(np.uint8)
    xs, ys, areas = leaders._dots(binary, box.height, top, bottom, opts)
    if len(xs) < opts.min_dots or not leaders._regular(xs, ys, areas, box.height, opts):
        return 0
    return len(xs)


@pytest.mark.parametrize("start", [2, 8, 20, 30, 34, 36, 38, 40, 44, 50, 70])
def test_leaders_that_start_near_and_far_from_the_text_count_as_before(start: int) -> None:
    # The line is about 30 px high: the shortcut's edge (1.2 line heights) is near 36.
    image, quad = label_with(dots(9, start=start))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    want = _leader_without_shortcut(gray, quad[None], 0, LeaderOptions())
    assert [f.dots for f in find_leaders(image, [quad])] == [want]


def test_the_shortcut_still_finds_a_leader_and_still_skips_a_far_one() -> None:
    image, quad = label_with(dots(9, start=8))
    assert [f.dots for f in find_leaders(image, [quad])] == [9]
    image, quad = label_with(dots(9, start=80))
    assert [f.dots for f in find_leaders(image, [quad])] == [0]


@pytest.mark.parametrize("seed", range(5))
def test_leaders_on_speckled_strips_count_as_before(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def speckle(d, x_end: int, baseline: int) -> None:  # noqa: ANN001
        for _ in range(60):
            x, y = int(rng.integers(x_end, 880)), int(rng.integers(10, 70))
            s = int(rng.integers(1, 4))
            d.rectangle([x, y, x + s, y + s], fill=int(rng.integers(0, 200)))
        dots(int(rng.integers(3, 12)), start=int(rng.integers(2, 60)))(d, x_end, baseline)

    image, quad = label_with(speckle)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    want = _leader_without_shortcut(gray, quad[None], 0, LeaderOptions())
    assert [f.dots for f in find_leaders(image, [quad])] == [want]


def _box_score_with_np_clip(prob: np.ndarray, box: np.ndarray) -> float:
    """detect._box_score as it was (np.clip on numpy scalars)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    pts = (box - np.array([xmin, ymin], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def test_box_score_equals_the_np_clip_version_on_random_maps_and_boxes() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        h, w = int(rng.integers(8, 120)), int(rng.integers(8, 200))
        prob = rng.random((h, w)).astype(np.float32)
        # Rotated rectangles as minAreaRect makes them, some reaching past the map.
        rect = ((float(rng.uniform(-10, w + 10)), float(rng.uniform(-10, h + 10))),
                (float(rng.uniform(1, w)), float(rng.uniform(1, h))),
                float(rng.uniform(-90, 90)))
        box = cv2.boxPoints(rect).astype(np.float32)
        assert _box_score(prob, box) == _box_score_with_np_clip(prob, box)


def _ink_profile_with_numpy(strip: np.ndarray) -> tuple[np.ndarray, float] | None:
    """recognize.ink_profile as it was (numpy max/min, mean and sum)."""
    gray = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    if int(gray.max()) - int(gray.min()) < 40:
        return None
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    rows = np.flatnonzero(binary.mean(axis=1) > 0.02)
    if rows.size == 0:
        return None
    band = binary[rows[0] : rows[-1] + 1]
    return band.sum(axis=0) >= 2, float(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("seed", range(40))
def test_ink_profile_equals_the_numpy_version_on_random_strips(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = int(rng.integers(8, 400))
    strip = np.full((48, w, 3), int(rng.integers(150, 256)), np.uint8)
    # Some ink (text-like blocks), some specks, now and then too faint to count.
    for _ in range(int(rng.integers(0, 30))):
        y, x = int(rng.integers(0, 48)), int(rng.integers(0, w))
        h, dx = int(rng.integers(1, 30)), int(rng.integers(1, 12))
        strip[y : y + h, x : x + dx] = int(rng.integers(0, 256))
    want = _ink_profile_with_numpy(strip)
    got = ink_profile(strip)
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert got.columns.dtype == bool and np.array_equal(got.columns, want[0])
        assert got.height == want[1]
