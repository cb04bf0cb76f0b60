"""What a document costs where (issue 15): intake's check vs a worker's page render.

    python bench/documents.py [--pages N] [--dpi D] [--repeat R]

Builds an N-page PDF of A4 pages (rendered text, images embedded at 200 DPI,
as a scanner makes) and a TIFF of the same pages, then times, best of R:
intake's ``documents.inspect`` (page count and sizes, nothing rendered), one
page's ``documents.render_page`` (what the worker that reads the page pays),
and for scale ``images.validate_image`` of one page as a PNG (what intake pays
for one plain image). Ratios are against the PNG check in the same run.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

from ocrq import documents
from ocrq.images import validate_image
from ocrq.settings import Settings


def a4_page(n: int, dpi: int = 200) -> Image.Image:
    w, h = int(8.27 * dpi), int(11.69 * dpi)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    for i in range(60):
        draw.text((120, 120 + i * 50), f"Page {n} line {i}: total {i * 17 + n}.50 paid",
                  font=font, fill=0)
    return img


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--dpi", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    s = Settings(pdf_dpi=a.dpi, max_pages=max(a.pages, 50))
    pages = [a4_page(i + 1) for i in range(a.pages)]
    pdf, tif, png = io.BytesIO(), io.BytesIO(), io.BytesIO()
    # The TIFF first: PIL's PDF writer leaves its options on the appended images.
    pages[0].save(tif, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    pages[0].save(pdf, "PDF", save_all=True, append_images=pages[1:], resolution=200)
    pages[0].save(png, "PNG")
    data = {"pdf": pdf.getvalue(), "tiff": tif.getvalue()}
    one = best_ms(lambda: validate_image(png.getvalue(), "p.png", s), a.repeat)
    rows = [("validate_image, one page as PNG (intake, an image)", len(png.getvalue()), one)]
    for kind, blob in data.items():
        rows.append((f"inspect {kind}, {a.pages} pages (intake, a document)", len(blob),
                     best_ms(lambda b=blob: documents.inspect(b, "d", s), a.repeat)))
        page = documents.render_page(blob, a.pages // 2, "d", s)
        rows.append((f"render_page {kind}, one page -> {page.shape[1]}x{page.shape[0]} "
                     "(worker)", len(blob),
                     best_ms(lambda b=blob: documents.render_page(b, a.pages // 2, "d", s),
                             a.repeat)))
    print(f"{'what':<62} {'bytes':>10} {'ms':>9} {'x PNG check':>12}")
    for what, size, ms in rows:
        print(f"{what:<62} {size:>10} {ms:>9.2f} {ms / one:>12.2f}")


if __name__ == "__main__":
    main()
