"""Table cells (ocrq/suite/table.py) on generated pages read by the real engine:
a bordered grid with spanning cells and a borderless financial table, each
between a title and a paragraph; the HTML (escaped), the pinned ``tcd`` model,
``ocrq run --tid table`` and ``ocrq eval --task table``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ocrq.cli import main
from ocrq.engine import Engine
from ocrq.errors import ModelIntegrityError
from ocrq.evaluation.table_eval import TableScore, TCell, relations
from ocrq.models.builtin import catalog, model_spec
from ocrq.models.repository import ModelRepository
from ocrq.plugin_stages import run_stage, run_stages
from ocrq.suite.table import PARAMS, PARAMS_SHA256, to_html
from ocrq.suite.table_cv import Seg
from ocrq.suite.table_grid import Cell, Grid
from tests.unit.table_pages import TrueCell, bordered, borderless


def _iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _norm(text: str) -> str:
    return "".join(text.split()).lower()


def _tables(engine: Engine, img: np.ndarray) -> list[dict[str, Any]]:
    doc = run_stages(engine, img, engine.run(img).to_dict(), [("table", {})])
    assert doc["models"]["tcd"] == 1 and "table" in doc["timings_ms"]
    assert doc["tables"]["count"] == len(doc["tables"]["tables"])
    return list(doc["tables"]["tables"])


def _check(table: dict[str, Any], truth: list[TrueCell]) -> None:
    """Every true cell found once, at its row/col with its spans, its box the box
    of its text, its text read; nothing else (no title, no paragraph)."""
    cells = table["cells"]
    assert len(cells) == len(truth), [c["text"] for c in cells]
    read = 0
    for t in truth:
        hit = [c for c in cells if _iou(c["box"], t.box) >= 0.5]
        assert len(hit) == 1, (t, [c["text"] for c in cells])
        c = hit[0]
        assert (c["row"], c["col"], c["row_span"], c["col_span"]) == (
            t.row, t.col, t.row_span, t.col_span), (t, c)
        read += _norm(c["text"]) == _norm(t.text)
    assert read >= 0.9 * len(truth)


class _Slots(HTMLParser):
    """Rows of (rowspan, colspan, text) of the first HTML table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[list[Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            a = dict(attrs)
            self.rows[-1].append([int(a.get("rowspan") or 1), int(a.get("colspan") or 1), ""])

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1][2] += data


def _grid_of(html: str, rows: int, cols: int) -> list[list[str]]:
    """The HTML table laid out on its grid: every slot covered exactly once."""
    parser = _Slots()
    parser.feed(html)
    grid: list[list[str | None]] = [[None] * cols for _ in range(rows)]
    assert len(parser.rows) == rows
    for r, tds in enumerate(parser.rows):
        c = 0
        for rs, cs, text in tds:
            while grid[r][c] is not None:
                c += 1
            for i in range(rs):
                for j in range(cs):
                    assert grid[r + i][c + j] is None
                    grid[r + i][c + j] = text
            c += cs
    assert all(slot is not None for row in grid for slot in row)
    return [[str(s) for s in row] for row in grid]


def test_a_bordered_table_with_spanning_cells(engine: Engine) -> None:
    img, truth = bordered()
    (table,) = _tables(engine, img)
    assert (table["rows"], table["cols"]) == (5, 5)
    _check(table, truth)
    grid = _grid_of(table["html"], 5, 5)
    assert grid[0][0] == grid[1][0] and _norm(grid[0][0]) == "region"  # rowspan 2
    assert grid[0][1] == grid[0][2] and grid[0][3] == grid[0][4]  # colspan 2 twice
    assert _norm(grid[4][0]) == "west" and _norm(grid[4][4]) == "811"


def test_a_borderless_table_with_a_header_spanning_two_columns(engine: Engine) -> None:
    img, truth = borderless()
    (table,) = _tables(engine, img)
    assert (table["rows"], table["cols"]) == (7, 4)
    _check(table, truth)
    grid = _grid_of(table["html"], 7, 4)
    assert grid[0][0] == "" and grid[0][1] == grid[0][2]  # empty corner, spanning header
    assert _norm(grid[3][0]) == "costofsales" and _norm(grid[3][1]) == "(7,312)"


def test_html_escapes_cell_text() -> None:
    seg = Seg(0, 0, 10, 10, '<script>alert("x")</script> & co', 0, 10.0)
    html = to_html(Grid([Cell(seg, 0, 0), Cell(dataclasses.replace(seg, text="a<b"), 0, 1)],
                        1, 2))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; co" in html
    assert html == ('<table><tr><td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co'
                    '</td><td>a&lt;b</td></tr></table>')


def test_the_stage_escapes_what_recognition_read(engine: Engine) -> None:
    """The cell text is the OCR lines' text as the stage receives it: markup in
    it comes out of the HTML escaped, and as it is in the cells."""
    img, _ = borderless()
    page = engine.run(img).to_dict()
    (revenue,) = [ln for ln in page["lines"] if _norm(ln["text"]) == "revenue"]
    revenue["text"] = "<script>alert(1)</script>"
    (table,) = run_stage(engine, "table", img, page).output["tables"]
    assert "<script>" not in table["html"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in (
        table["html"])
    assert any(c["text"] == "<script>alert(1)</script>" for c in table["cells"])


def test_the_tcd_model_materialises_with_its_pinned_sha256(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    spec = catalog().kinds["tcd"]
    assert catalog().origin["kind:tcd"] == "ocrq-suite-table"
    assert catalog().stages["table"].models == ("tcd",)
    assert catalog().stages["table"].key == "tables"
    repo = ModelRepository(tmp_path)
    repo.ensure_defaults([model_spec("tcd")])
    manifest = repo.manifest("tcd", 1)
    blob = manifest.weights_path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == PARAMS_SHA256 == spec.sha256
    assert spec.load is not None and spec.load(manifest.weights_path) == PARAMS
    tuned = dataclasses.replace(spec, make=lambda: json.dumps({**PARAMS, "split_gap": 0.9}
                                                              ).encode())
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModelRepository(tmp_path / "other").ensure_defaults([tuned])
    # A file from an older ocrq (fewer parameters) loads with this ocrq's values
    # for the ones it lacks, and says so; the ones it has are its own.
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"format": "ocrq-table-cv/1", "split_gap": 0.9}))
    with caplog.at_level(logging.WARNING, logger="ocrq.suite.params"):
        loaded = spec.load(partial)
    assert loaded == {**PARAMS, "split_gap": 0.9}
    assert "tcd parameters" in caplog.text and "lack" in caplog.text


def test_ocrq_run_tid_table_json(tmp_path: Path, model_root: Path) -> None:
    img, truth = bordered()
    image = tmp_path / "page.png"
    cv2.imwrite(str(image), img)
    env = {"OCRQ_MODEL_ROOT": str(model_root), "OCRQ_THREADS": "1"}
    out = CliRunner().invoke(main, ["run", "--json", "--tid", "table", str(image)], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    (table,) = doc["tables"]["tables"]
    assert doc["models"]["tcd"] == 1 and table["html"].startswith("<table>")
    assert len(table["cells"]) == len(truth) and doc["lines"]


def test_relations_are_nearest_neighbours_right_and_below() -> None:
    box = (0.0, 0.0, 1.0, 1.0)
    cells = [TCell(box, 0, 0, 2, 1), TCell(box, 0, 1, 1, 2), TCell(box, 1, 1),
             TCell(box, 1, 2), TCell(box, 2, 0), TCell(box, 2, 2)]
    # "a" spans rows 0-1: right of it are the header (row 0) and cell (1, 1)
    assert relations(cells) == {(0, 1, "h"), (0, 2, "h"), (2, 3, "h"), (0, 4, "v"),
                                (1, 2, "v"), (1, 3, "v"), (3, 5, "v"), (4, 5, "h")}


def test_score_matches_one_to_one_at_iou_half() -> None:
    truth = [TCell((0, 0, 10, 10), 0, 0), TCell((20, 0, 30, 10), 0, 1)]
    found = [TCell((0, 0, 10, 10), 0, 0), TCell((0, 0, 11, 10), 0, 1),
             TCell((14, -5, 36, 15), 0, 2)]  # holds all of the second, IoU 0.23
    s = TableScore("x")
    s.add("p", found, truth, 1.0)
    m = s.metrics()
    assert (s.matched, s.contained) == (1, 2) and m["cell_recall"] == 0.5
    # by IoU the left cell alone matched; by containment the 2nd and 3rd found hold
    # the two true cells, so their relation is right
    assert s.rel_truth == 1 and s.rel_right == 0 and s.rel_right_contain == 1


def test_ocrq_eval_task_table_scores_a_manifest(tmp_path: Path, model_root: Path) -> None:
    rows = []
    for name, make in (("ruled.png", bordered), ("plain.png", borderless)):
        img, truth = make()
        cv2.imwrite(str(tmp_path / name), img)
        rows.append({"image": name, "width": img.shape[1], "height": img.shape[0],
                     "cells": [{"box": [[t.box[0], t.box[1]], [t.box[2], t.box[1]],
                                        [t.box[2], t.box[3]], [t.box[0], t.box[3]]],
                                "row": t.row, "col": t.col, "row_span": t.row_span,
                                "col_span": t.col_span, "table": 0} for t in truth]})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"OCRQ_MODEL_ROOT": str(model_root)}
    out = CliRunner().invoke(main, ["eval", str(tmp_path), "--task", "table", "--json",
                                    "--threads", "1"], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    (res,) = doc["results"]
    assert doc["tid"] == "table" and res["detector"] == "ocrq" and res["truth"] == 22 + 24
    assert res["cell_f1"] >= 0.95 and res["adjacency_f1"] >= 0.95, res
    missing = CliRunner().invoke(main, ["eval", str(tmp_path), "--task", "table",
                                        "--engine", "nope"], env=env)
    assert missing.exit_code != 0 and "unknown table detector" in missing.output
