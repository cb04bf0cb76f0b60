"""``ocrq eval`` end to end on a tiny generated manifest, with real engines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

import ocrq.cli.eval as eval_cli
from ocrq.cli import main
from ocrq.evaluation.peers import Prediction
from tests.fixtures import find_font

PAGES = [
    ["ACME Office Supplies", "Invoice number 2026 0042", "Paper 500 sheets 4.20", "Total 12.50"],
    ["Harbour Road Springfield", "Blue pens box 3.80", "Stapler heavy duty", "Thank you"],
]


def write_manifest(folder: Path) -> Path:
    """Render each page with PIL and record every line's box as ground truth."""
    font = ImageFont.truetype(str(find_font("DejaVuSans")), 32)
    rows = []
    for i, lines in enumerate(PAGES):
        img = Image.new("L", (760, 80 + 60 * len(lines)), 255)
        draw = ImageDraw.Draw(img)
        truth = []
        for j, text in enumerate(lines):
            x, y = 40, 40 + 60 * j
            draw.text((x, y), text, font=font, fill=0)
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            truth.append({"text": text, "box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        img.save(folder / f"page{i}.png")
        rows.append({"image": f"page{i}.png", "lines": truth})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run_eval(*args: str) -> dict:
    result = CliRunner().invoke(main, ["eval", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("engine", ["tesseract", "ocrq"])
def test_eval_scores_clean_rendered_text(tmp_path: Path, engine: str) -> None:
    doc = run_eval(str(write_manifest(tmp_path)), "--engine", engine, "--json", "--threads", "2")
    assert doc["threads"] == 2
    [res] = doc["results"]
    assert res["engine"] == engine
    assert res["pages"] == 2 and len(res["per_page"]) == 2
    # Clean 32 px text: a working engine reads nearly all of it. Loose bounds,
    # but an engine returning nothing, garbage or misplaced boxes fails them.
    assert res["word_f1"] > 0.75, res
    assert res["char_f1"] > 0.9, res
    assert res["detection_recall"] >= 0.75, res
    assert res["words"]["true"] == sum(len(" ".join(p).split()) for p in PAGES)
    assert 0 < res["seconds_per_page"] < 60
    for page in res["per_page"]:
        assert page["detection"]["boxes"] == 4
        assert 0 <= page["words"]["f1"] <= 1
    by_length = res["detection_recall_by_length"]
    assert [b["length"] for b in by_length] == ["1", "2-3", "4-7", "8-15", "16+"]
    assert sum(b["boxes"] for b in by_length) == 8
    assert sum(b["covered"] for b in by_length) == res["boxes"]["covered"]
    assert res["confusions"]["lines"] == res["boxes"]["covered"]


def test_eval_table_with_two_engines_and_limit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["eval", str(write_manifest(tmp_path)), "--engine", "tesseract", "--engine", "ocrq"]
        + ["--limit", "1"],
    )
    assert result.exit_code == 0, result.output
    table, *sections = result.output.strip().split("\n\n")
    lines = table.splitlines()
    assert lines[0].startswith("| engine | pages | word P")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["tesseract", "ocrq"]
    assert all(ln.split("|")[2].strip() == "1" for ln in lines[2:])
    assert sections[0].startswith("Detection recall by ground-truth line length")
    assert sections[1].startswith("| engine | 1 | 2-3 | 4-7 | 8-15 | 16+ |")
    assert [ln.split("|")[1].strip() for ln in sections[1].splitlines()[2:]] == [
        "tesseract", "ocrq"]
    assert sections[2].startswith("Missed lines, tesseract")
    assert sections[3].startswith("Missed lines, ocrq")
    assert sections[4].startswith("Top confusions, tesseract: ")
    assert sections[6].startswith("Top confusions, ocrq: ")
    assert sections[7].startswith("| # | substitution | n | deletion | n | insertion | n |")


class MisreadingEngine:
    """Reads every line of the page below except the "1", with M read as H."""

    name = "fake"

    def __init__(self, truth: list[dict]) -> None:
        self._truth = truth

    def predict(self, image: np.ndarray, path: Path | None = None) -> Prediction:
        lines = [(ln["text"].replace("M", "H"), ln["box"]) for ln in self._truth
                 if ln["text"] != "1"]
        return Prediction(lines, 0.01)


def test_eval_prints_length_recall_and_confusions(tmp_path: Path, monkeypatch) -> None:
    truth = [
        {"text": text, "box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}
        for text, (x0, y0, x1, y1) in [("RM", (10, 10, 40, 30)), ("RM", (10, 50, 40, 70)),
                                        ("TOTAL", (100, 10, 200, 30)), ("1", (100, 50, 110, 70))]
    ]
    Image.new("L", (300, 100), 255).save(tmp_path / "page.png")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"image": "page.png", "lines": truth}))
    monkeypatch.setattr(eval_cli, "build_engine", lambda name, threads: MisreadingEngine(truth))

    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--engine", "fake"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "| fake | 1 | 0.333 | 0.250 | 0.286 |" in out  # the main table, as before
    assert "| fake | 0.000 (0/1) | 1.000 (2/2) | 1.000 (1/1) | - | - |" in out
    assert 'Missed lines, fake (1 lines, 1 distinct; most frequent, then shortest): "1" x1' in out
    assert "Top confusions, fake: 3 matched lines, 9 chars, 2 char edits (22.22%)" in out
    assert "| 1 | M→H | 2 |  |  |  |  | RM → RH | 2 |" in out

    doc = run_eval(str(tmp_path), "--engine", "fake", "--json")
    [res] = doc["results"]
    assert res["confusions"]["substitutions"] == [{"truth": "M", "read": "H", "count": 2}]
    assert res["confusions"]["words"] == [{"truth": "RM", "read": "RH", "count": 2}]
    assert res["missed_lines"] == [{"text": "1", "count": 1}]
    assert res["per_page"][0]["missed"] == ["1"]


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--engine", "abbyy"])
    assert result.exit_code != 0
    assert "no manifest.jsonl" in result.output
    write_manifest(tmp_path)
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--engine", "abbyy"])
    assert result.exit_code != 0
    assert "unknown engine 'abbyy'; known: ocrq, rapidocr, tesseract" in result.output
