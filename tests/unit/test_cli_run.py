"""`ocrq run` as a user runs it: a real subprocess on files it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures import INVOICE_LINES, encode, render_page


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    page = render_page(INVOICE_LINES[:4])
    for fmt in ("png", "jpeg", "tiff", "bmp", "webp"):
        kwargs = {"quality": 95} if fmt in ("jpeg", "webp") else {}
        (d / f"page.{fmt}").write_bytes(encode(page, fmt, **kwargs))
    (d / "notes.png").write_text("this is not an image\n")
    return d


def ocrq(model_root, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OCRQ_MODEL_ROOT": str(model_root), **extra}
    return subprocess.run(
        [sys.executable, "-m", "ocrq", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_every_format_reads_and_a_bad_file_is_one_line_error(model_root, folder):
    res = ocrq(model_root, "run", "--json", str(folder))
    assert res.returncode == 1  # one bad file
    errors = res.stderr.strip().splitlines()
    assert errors == ["ocrq: error: notes.png: not an image (unrecognised format)"]
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(os.path.basename(d["image"]) for d in docs) == [
        "page.bmp", "page.jpeg", "page.png", "page.tiff", "page.webp"]
    for doc in docs:
        assert set(doc) == {"image", "width", "height", "rotation", "lines", "models",
                            "timings_ms", "cost"}
        assert set(doc["cost"]) == {"rotate", "detect", "recognize", "reorder", "total"}
        assert [ln["text"] for ln in doc["lines"]] == INVOICE_LINES[:4]
        assert [ln["order"] for ln in doc["lines"]] == [0, 1, 2, 3]
        assert all(len(ln["polygon"]) == 4 and 0 < ln["confidence"] <= 1 for ln in doc["lines"])
        assert doc["models"] == {"rot": 1, "std": 1, "dir": 1, "str": 1, "str2": 1}
        assert doc["rotation"] == 0


def test_plain_text_for_one_file_and_globs(model_root, folder):
    res = ocrq(model_root, "run", str(folder / "page.png"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines() == INVOICE_LINES[:4]
    res = ocrq(model_root, "run", str(folder / "page.[pb][nm]*"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("==> ") == 2 and "Invoice number: INV-2026-0042" in res.stdout


def test_missing_file_and_no_match(model_root, folder):
    res = ocrq(model_root, "run", str(folder / "nope.jpg"), str(folder / "*.gif"),
               str(folder / "page.png"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("ocrq: error: ") for line in lines)
    assert "nope.jpg" in lines[0] and "*.gif" in lines[1]
    assert INVOICE_LINES[0] in res.stdout


def test_lexicon_option(model_root, tmp_path):
    from tests.fixtures import blurred_line

    path = tmp_path / "medium.png"
    path.write_bytes(encode(blurred_line(), "png"))
    assert ocrq(model_root, "run", str(path)).stdout.strip() == "MEDIUM MONTH"
    # The lexicon's own effect: with the second reading off, no lexicon misreads it.
    one = {"OCRQ_SECOND_READING": "0"}
    assert ocrq(model_root, "run", str(path), **one).stdout.strip() == "MEDIUM MONTH"
    plain = ocrq(model_root, "run", "--lexicon", "none", str(path), **one)
    assert plain.returncode == 0 and plain.stdout.strip() not in ("", "MEDIUM MONTH")
    # The second network's reading settles the same words without any lexicon.
    both = ocrq(model_root, "run", "--lexicon", "none", str(path))
    assert both.returncode == 0 and both.stdout.strip() == "MEDIUM MONTH"
    off = ocrq(model_root, "run", str(path), OCRQ_SECOND_READING="1.5")
    assert off.returncode == 1 and "OCRQ_SECOND_READING" in off.stderr
    bad = ocrq(model_root, "run", "--lexicon", "en,xx", str(path))
    assert bad.returncode == 1 and "unknown lexicon language(s) xx" in bad.stderr
