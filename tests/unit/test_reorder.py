"""Reading order on synthetic fragment boxes (no models)."""

from __future__ import annotations

import math

import numpy as np

from ocrq.stages.reorder import estimate_skew, reading_order


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def order_of(boxes: list[np.ndarray]) -> list[int]:
    placements = reading_order(boxes)
    return sorted(range(len(boxes)), key=lambda i: placements[i].order)


def test_receipt_rows_read_across():
    # item ............ price, four rows; shuffled input order.
    rows = []
    for r in range(4):
        y = 100 + 40 * r
        rows += [box(20, y, 200, y + 25), box(400, y + 2, 470, y + 27)]
    shuffled = [rows[i] for i in (7, 2, 5, 0, 3, 6, 1, 4)]
    got = [shuffled[i] for i in order_of(shuffled)]
    assert [b.tolist() for b in got] == [b.tolist() for b in rows]
    lines = [p.line for p in reading_order(rows)]
    assert lines == [0, 0, 1, 1, 2, 2, 3, 3]


def test_two_text_columns_read_down_then_across():
    left = [box(20, 100 + 40 * r, 300, 125 + 40 * r) for r in range(5)]
    right = [box(400, 110 + 40 * r, 700, 135 + 40 * r) for r in range(5)]
    title = [box(150, 20, 550, 50)]
    boxes = right + title + left
    got = order_of(boxes)
    assert got == [5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4]
    placements = reading_order(boxes)
    assert len({placements[i].block for i in range(6, 11)}) == 1
    assert placements[0].block != placements[6].block


def test_skewed_lines_group_correctly():
    angle = math.radians(4)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    boxes = []
    for r in range(3):
        y = 100 + 45 * r
        boxes += [box(20, y, 260, y + 28) @ rot.T, box(300, y, 560, y + 28) @ rot.T]
    assert abs(estimate_skew(boxes) - angle) < 0.01
    lines = [p.line for p in reading_order([b.astype(np.float32) for b in boxes])]
    assert lines == [0, 0, 1, 1, 2, 2]
    assert order_of(boxes) == [0, 1, 2, 3, 4, 5]


def test_paragraph_gap_starts_a_new_block():
    boxes = [box(20, 100, 400, 125), box(20, 135, 400, 160), box(20, 260, 400, 285)]
    blocks = [p.block for p in reading_order(boxes)]
    assert blocks[0] == blocks[1] != blocks[2]


def test_empty_input():
    assert reading_order([]) == []
