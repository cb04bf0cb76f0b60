"""ocrq/documents.py: counting and checking a document's pages at intake, rendering
one page, page keys, the assembled result; and `ocrq run` on a PDF."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ocrq import documents
from ocrq.errors import ImageTooLarge, InvalidImage
from ocrq.settings import Settings
from tests.doc_fixtures import encrypted_pdf, pdf, tiff
from tests.fixtures import render_page

S = Settings()


@pytest.fixture(scope="module")
def pages() -> list[np.ndarray]:
    return [render_page([f"Page {n} of three", f"Total {17 * n}.50"]) for n in (1, 2, 3)]


def test_pdf_pages_are_counted_sized_and_rendered_as_drawn(pages: list[np.ndarray]) -> None:
    data = pdf(pages)
    info = documents.inspect(data, "d.pdf", S)
    assert info is not None and info.kind == "pdf" and info.pages == 3
    for i, page in enumerate(pages):
        out = documents.render_page(data, i, "d.pdf", S)
        assert (out.shape[1], out.shape[0]) == info.sizes[i]  # what intake promised
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        h, w = page.shape[:2]
        # PDFium's resampling differs by a grey level or two, never by a page.
        assert np.abs(out[:h, :w].astype(int) - page).mean() < 8
    with pytest.raises(InvalidImage) as exc:
        documents.render_page(data, 3, "d.pdf", S)
    assert exc.value.details["reason"] == "no_page"


def test_tiff_pages_exactly_and_one_page_tiff_is_an_image(pages: list[np.ndarray]) -> None:
    data = tiff(pages[:2])
    info = documents.inspect(data, "s.tif", S)
    assert info is not None and info.kind == "tiff" and info.pages == 2
    for i in range(2):
        assert np.array_equal(documents.render_page(data, i, "s.tif", S), pages[i])
    assert documents.inspect(tiff(pages[:1]), "one.tif", S) is None
    png = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(png, "PNG")
    assert documents.inspect(png.getvalue(), "x.png", S) is None


@pytest.mark.parametrize("kind", ["pdf", "tiff"])
def test_too_many_pages(pages: list[np.ndarray], kind: str) -> None:
    data = pdf(pages) if kind == "pdf" else tiff(pages)
    with pytest.raises(ImageTooLarge) as exc:
        documents.inspect(data, "d", S.with_(max_pages=2))
    assert exc.value.details["reason"] == "too_many_pages"
    assert exc.value.details["limit"] == 2
    assert documents.inspect(data, "d", S.with_(max_pages=3)) is not None


def test_each_page_meets_the_pixel_limits_at_the_render_dpi(pages: list[np.ndarray]) -> None:
    data = pdf([pages[0], pages[1], render_page(["a much wider third page"], width=900)])
    size = documents.inspect(data, "d.pdf", S).sizes[2]  # type: ignore[union-attr]
    doubled = documents.inspect(data, "d.pdf", S.with_(pdf_dpi=400))
    assert doubled is not None and doubled.sizes[2][0] in (2 * size[0] - 1, 2 * size[0])
    with pytest.raises(ImageTooLarge) as exc:
        documents.inspect(data, "d.pdf", S.with_(max_image_side=size[0] - 1))
    assert exc.value.details["reason"] == "side_too_long"
    assert "page 3" in exc.value.message  # pages 1 and 2 are narrower
    big_second = tiff([pages[0], render_page(["wide"], width=900)])
    with pytest.raises(ImageTooLarge):
        documents.inspect(big_second, "t.tif", S.with_(max_image_side=800))


def test_encrypted_and_corrupt_pdfs_are_invalid(pages: list[np.ndarray]) -> None:
    with pytest.raises(InvalidImage) as exc:
        documents.inspect(encrypted_pdf(pages[0]), "locked.pdf", S)
    assert exc.value.details["reason"] == "encrypted"
    good = pdf(pages)
    for bad in (good[: len(good) // 3], b"%PDF-1.4\n" + os.urandom(300)):
        with pytest.raises(InvalidImage) as exc:
            documents.inspect(bad, "bad.pdf", S)
        assert exc.value.details["reason"] == "corrupt"


def test_page_keys_round_trip() -> None:
    key = documents.page_key("ocrq:img:abc", 7)
    assert documents.split_key(key) == ("ocrq:img:abc", 7)
    assert documents.split_key("ocrq:img:abc") == ("ocrq:img:abc", None)


def test_assembled_document_numbers_pages_and_sums_timings() -> None:
    page = {"image": "d.pdf", "width": 10, "height": 10, "rotation": 0, "lines": [],
            "models": {"std": 1}, "timings_ms": {"detect": 1.5}}
    doc = documents.assemble("d.pdf", [page, {**page, "models": {"str": 2}}])
    assert doc["page_count"] == 2 and [p["page"] for p in doc["pages"]] == [1, 2]
    assert doc["models"] == {"std": 1, "str": 2} and doc["timings_ms"] == {"detect": 3.0}


def test_ocrq_run_reads_every_page(model_root, tmp_path, pages: list[np.ndarray]) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf(pages))
    env = {**os.environ, "OCRQ_MODEL_ROOT": str(model_root)}
    run = [sys.executable, "-m", "ocrq", "run"]
    text = subprocess.run([*run, str(path)], capture_output=True, text=True, env=env,
                          timeout=300, check=True).stdout
    parts = text.rstrip("\n").split("\f")
    assert len(parts) == 3 and all(f"Total {17 * n}.50" in p for n, p in zip(
        (1, 2, 3), parts, strict=True)), text
    out = subprocess.run([*run, "--json", str(path)], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout
    doc = json.loads(out)
    assert doc["page_count"] == 3 and [p["page"] for p in doc["pages"]] == [1, 2, 3]
