"""``ocrq eval`` end to end on a tiny generated manifest, with real engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

from ocrq.cli import main
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


def test_eval_table_with_two_engines_and_limit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["eval", str(write_manifest(tmp_path)), "--engine", "tesseract", "--engine", "ocrq"]
        + ["--limit", "1"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("| engine | pages | word P")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["tesseract", "ocrq"]
    assert all(ln.split("|")[2].strip() == "1" for ln in lines[2:])


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--engine", "abbyy"])
    assert result.exit_code != 0
    assert "no manifest.jsonl" in result.output
    write_manifest(tmp_path)
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--engine", "abbyy"])
    assert result.exit_code != 0
    assert "unknown engine 'abbyy'; known: ocrq, rapidocr, tesseract" in result.output
