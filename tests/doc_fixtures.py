"""Small generated documents for the document tests: PDFs and multi-page TIFFs of
rendered text pages (tests.fixtures.render_page), an encrypted PDF."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
from PIL import Image


def _pil(page: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(page, cv2.COLOR_BGR2RGB))


def pdf(pages: list[np.ndarray], dpi: int = 200) -> bytes:
    """A PDF with one page per image, each page sized so it renders back at ``dpi``
    to the image's own pixel size."""
    first, *rest = [_pil(p) for p in pages]
    buf = io.BytesIO()
    first.save(buf, format="PDF", save_all=True, append_images=rest, resolution=dpi)
    return buf.getvalue()


def tiff(pages: list[np.ndarray]) -> bytes:
    first, *rest = [_pil(p) for p in pages]
    buf = io.BytesIO()
    first.save(buf, format="TIFF", save_all=True, append_images=rest, compression="tiff_lzw")
    return buf.getvalue()


def encrypted_pdf(page: np.ndarray) -> bytes:
    """A PDF whose trailer names a standard security handler with a user password
    that is not empty: readers must ask for the password."""
    data = pdf([page])
    enc = (b"/Encrypt << /Filter /Standard /V 1 /R 2 /P -4 /O <" + b"11" * 32 + b"> /U <"
           + b"22" * 32 + b"> >> /ID [<" + b"33" * 16 + b"> <" + b"33" * 16 + b">]")
    return re.sub(rb"trailer\s*<<", b"trailer\n<<" + enc, data, count=1)
