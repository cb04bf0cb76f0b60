"""Render samples/receipt.png, the README quick-start image (`ocrq run samples/receipt.png`).

Deterministic: the same fonts give the same bytes. Needs the DejaVu fonts
(Debian: fonts-dejavu-core). Run from anywhere:

    python scripts/make_sample.py [--out samples/receipt.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
WIDTH = 600
MARGIN = 36

TITLE = "GREEN LEAF CAFE"
HEADER = [
    "221 Market Street, Springfield",
    "Tel: 555-0142   VAT: GB 123 4567 89",
    "Receipt no: R-2026-11-0815",
    "Date: 25/11/2026   Time: 09:42",
]
ITEMS = [
    ("Cappuccino large", "3.80"),
    ("Flat white", "3.20"),
    ("Croissant butter", "2.40"),
    ("Avocado toast", "7.90"),
    ("Orange juice fresh", "3.50"),
    ("Blueberry muffin", "2.60"),
    ("Sparkling water", "1.90"),
]
TOTALS = [("Subtotal", "25.30"), ("VAT 20% incl.", "4.22"), ("TOTAL", "25.30"),
          ("Card payment", "25.30")]
FOOTER = ["Thank you for your visit!", "Please come again"]


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / f"{name}.ttf"
    if not path.is_file():
        raise SystemExit(f"{path} not found: install the DejaVu fonts (fonts-dejavu-core)")
    # BASIC layout: same output with or without libraqm, no ligatures.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def render() -> Image.Image:
    title, body, bold = font("DejaVuSans-Bold", 34), font("DejaVuSansMono", 22), \
        font("DejaVuSansMono-Bold", 24)
    page = Image.new("L", (WIDTH, 1000), 255)
    draw = ImageDraw.Draw(page)
    y = MARGIN

    def centred(text: str, f: ImageFont.FreeTypeFont, pitch: int) -> None:
        nonlocal y
        draw.text(((WIDTH - f.getlength(text)) / 2, y), text, font=f, fill=0)
        y += pitch

    def row(left: str, right: str, f: ImageFont.FreeTypeFont, pitch: int = 36) -> None:
        # Prices right-aligned on a shared edge, like a till printout.
        nonlocal y
        draw.text((MARGIN, y), left, font=f, fill=0)
        draw.text((WIDTH - MARGIN - f.getlength(right), y), right, font=f, fill=0)
        y += pitch

    def rule() -> None:
        nonlocal y
        draw.line((MARGIN, y + 8, WIDTH - MARGIN, y + 8), fill=0, width=2)
        y += 24

    centred(TITLE, title, 52)
    for line in HEADER:
        centred(line, body, 32)
    rule()
    for name, price in ITEMS:
        row(name, price, body)
    rule()
    for label, amount in TOTALS:
        row(label, amount, bold if label == "TOTAL" else body)
    rule()
    for line in FOOTER:
        centred(line, body, 32)
    return page.crop((0, 0, WIDTH, y + MARGIN))


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "samples" / "receipt.png"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    render().save(args.out, optimize=True)  # 8-bit grey PNG: small and lossless
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
