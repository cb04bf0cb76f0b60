"""Deterministic test images: document-like text rendered with the DejaVu fonts.

Importable from any test (``from tests.fixtures import render_page``). All
images are BGR ``uint8`` arrays (the convention of ``ocrq.images``), black
text on white, large enough for OCR at the default 28 px font size.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian/Ubuntu fonts-dejavu-core
    Path("/usr/share/fonts/dejavu"),  # Fedora/Arch
    Path("/usr/share/fonts/TTF"),
    Path("/Library/Fonts"),
)

INVOICE_LINES = [
    "ACME Office Supplies Ltd.",
    "12 Harbour Road, Springfield",
    "Invoice number: INV-2026-0042",
    "Date: 25 November 2026",
    "Paper A4 500 sheets 4.20",
    "Blue pens box of 10 3.80",
    "Stapler heavy duty 4.50",
    "Total 12.50",
    "Thank you for your order",
]


def find_font(name: str = "DejaVuSans") -> Path:
    """Path of ``<name>.ttf`` (e.g. DejaVuSans, DejaVuSansMono, DejaVuSerif)."""
    for d in FONT_DIRS:
        p = d / f"{name}.ttf"
        if p.is_file():
            return p
    searched = ", ".join(str(d) for d in FONT_DIRS)
    raise FileNotFoundError(
        f"font {name}.ttf not found (searched {searched}); "
        "install the DejaVu fonts (Debian: apt-get install fonts-dejavu-core)"
    )


@lru_cache(maxsize=32)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: identical output with or without libraqm installed, and no
    # "fi"/"fl" ligatures that an OCR model would read as one odd glyph.
    return ImageFont.truetype(str(find_font(name)), size, layout_engine=ImageFont.Layout.BASIC)


def _block_size(lines: list[str], font: ImageFont.FreeTypeFont, pitch: int) -> tuple[int, int]:
    width = max((int(font.getlength(s)) for s in lines), default=0)
    return width, pitch * len(lines)


def render_page(
    lines: list[str],
    *,
    font: str = "DejaVuSans",
    size: int = 28,
    width: int | None = None,
    margin: int = 40,
    line_gap: int | None = None,
    columns: list[list[str]] | None = None,
) -> np.ndarray:
    """Render ``lines`` top to bottom, then optional ``columns`` side by side below them.

    ``width`` None fits the widest content. ``line_gap`` defaults to half the
    font size. Columns are separated by a gap of three font sizes, so a reader
    that merges them across the gutter is visibly wrong.
    """
    f = _font(font, size)
    ascent, descent = f.getmetrics()
    gap = size // 2 if line_gap is None else line_gap
    pitch = ascent + descent + gap
    col_gap = 3 * size
    columns = columns or []

    head_w, head_h = _block_size(lines, f, pitch)
    col_sizes = [_block_size(c, f, pitch) for c in columns]
    cols_w = sum(w for w, _ in col_sizes) + col_gap * max(len(columns) - 1, 0)
    cols_h = max((h for _, h in col_sizes), default=0)
    content_w = max(head_w, cols_w, 1)
    page_w = width if width is not None else content_w + 2 * margin
    page_h = head_h + (pitch if lines and columns else 0) + cols_h + 2 * margin - gap

    page = Image.new("L", (page_w, max(page_h, 2 * margin)), 255)
    draw = ImageDraw.Draw(page)
    y = margin
    for s in lines:
        draw.text((margin, y), s, font=f, fill=0)
        y += pitch
    if lines and columns:
        y += pitch  # blank line between the heading block and the columns
    x = margin
    for col, (w, _) in zip(columns, col_sizes, strict=True):
        cy = y
        for s in col:
            draw.text((x, cy), s, font=f, fill=0)
            cy += pitch
        x += w + col_gap
    return cv2.cvtColor(np.asarray(page), cv2.COLOR_GRAY2BGR)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise by ``degrees`` (the PIL/OpenCV convention).

    Multiples of 90 are exact (no resampling); other angles resample onto a
    canvas enlarged to keep every pixel, padded with white.
    """
    if float(degrees) % 90 == 0:
        return np.ascontiguousarray(np.rot90(img, k=int(degrees) // 90 % 4))
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    new_w, new_h = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[0, 2] += new_w / 2 - w / 2
    m[1, 2] += new_h / 2 - h / 2
    border = (255,) * (img.shape[2] if img.ndim == 3 else 1)
    return cv2.warpAffine(img, m, (new_w, new_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def add_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise (std ``sigma`` grey levels), seeded, clipped to uint8."""
    rng = np.random.default_rng(seed)
    noisy = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int = 75) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode again (compression artefacts)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "cv2.imencode failed"
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert out is not None
    return out


def encode(img: np.ndarray, fmt: str = "png", **save_kwargs: object) -> bytes:
    """Encode a BGR (or grey) array with PIL: png, jpeg/jpg, tiff, bmp, webp.

    ``save_kwargs`` go to ``PIL.Image.save`` (e.g. ``exif=``, ``quality=``).
    """
    fmt = {"jpg": "jpeg", "tif": "tiff"}.get(fmt.lower(), fmt.lower())
    if img.ndim == 3 and img.shape[2] == 3:
        pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    elif img.ndim == 3 and img.shape[2] == 4:
        pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA))
    else:
        pil = Image.fromarray(img)
    buf = io.BytesIO()
    pil.save(buf, format=fmt.upper(), **save_kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB pixels but carries a tiny IDAT.

    A decoder that trusts the header and allocates before checking would try to
    reserve ``3 * width * height`` bytes: the decompression-bomb shape.
    """
    return _png(width, height, zlib.compress(b"\x00" + b"\xff" * 3))  # one white pixel


def png_zlib_bomb(width: int, height: int) -> bytes:
    """A valid black PNG whose IDAT really inflates to ``3 * width * height`` bytes.

    About 1/1000 of the decoded size on disk (9000x9000: ~240 KB for 243 MB).
    """
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0 + black pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return _png(width, height, idat)


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


# --- dot leaders ------------------------------------------------------------------
GREY = 90  # receipt leaders are fainter than the text
Drawer = Callable[[ImageDraw.ImageDraw, int, int], None]


def label_with(extra: Drawer, label: str = "TOTAL AMT", size: int = 24
               ) -> tuple[np.ndarray, np.ndarray]:
    """White strip with ``label`` at (20, 20); ``extra(draw, x_end, baseline)``
    draws what follows. Returns the BGR image and the label's box as a DB-like quad."""
    img = Image.new("L", (900, 80), 255)
    draw = ImageDraw.Draw(img)
    font = _font("DejaVuSansMono", size)
    x0, y0, x1, y1 = draw.textbbox((20, 20), label, font=font)
    draw.text((20, 20), label, font=font, fill=0)
    extra(draw, x1, y1)
    pad = 0.4 * (y1 - y0)  # the detector's boxes reach past the ink
    quad = np.array([[x0 - pad, y0 - pad], [x1 + pad / 2, y0 - pad],
                     [x1 + pad / 2, y1 + pad], [x0 - pad, y1 + pad]], np.float32)
    bgr = np.repeat(np.asarray(img)[:, :, None], 3, axis=2)
    return bgr, quad


def dots(n: int, pitch: int = 10, start: int = 8, r: float = 1.6, fill: int = GREY) -> Drawer:
    """``n`` round dots on the baseline, ``pitch`` px apart, starting ``start`` px
    after the label (a dot leader as receipt printers print it)."""

    def draw(d: ImageDraw.ImageDraw, x_end: int, baseline: int) -> None:
        for k in range(n):
            cx, cy = x_end + start + k * pitch, baseline - r - 1
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    return draw


# --- a word the recogniser misreads ------------------------------------------------
def blurred_line(text: str = "MEDIUM MONTH", size: int = 12, scale: float = 0.7) -> np.ndarray:
    """``text`` in DejaVu Sans Mono, shrunk and enlarged again (a soft, low-resolution
    print). At the defaults the PP-OCRv4 recogniser reads "MEDTUR MONTH": I and M
    come second at two glyphs, so the English lexicon settles it to "MEDIUM"."""
    img = render_page([text], font="DejaVuSansMono", size=size, margin=10)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.resize(img, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_LINEAR)
