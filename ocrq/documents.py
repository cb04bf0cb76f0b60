"""Documents: multi-page PDF and multi-page TIFF, one job with a page list.

At intake only :func:`inspect` runs: it counts the pages and checks each
page's pixel size (a PDF page at ``OCRQ_PDF_DPI``) against the image limits,
without rendering anything, so a 50-page PDF costs the web process a few
milliseconds. Each page is rendered by the worker that reads it
(:func:`render_page`), from the one stored document blob, so the pages of a
document spread over the workers like separate images.

A page of a job's document is named by its blob key with a page suffix
(:func:`page_key`): the messages keep carrying one reference, and everything
that reads an image by key (the worker's decoded-image cache included) works
on pages unchanged.

PDFium is not thread-safe: every call into it holds one process-wide lock
(GPU workers can run tasks on threads).
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

from ocrq.errors import ImageTooLarge, InvalidImage
from ocrq.images import check_size, decode_frame
from ocrq.settings import Settings

_PDFIUM = threading.Lock()
_PAGE_SEP = "#page="
# The PDF spec lets the header start anywhere in the first 1024 bytes.
_PDF_MAGIC_WITHIN = 1024


@dataclass(frozen=True)
class DocumentInfo:
    """What intake learns of a document: its kind and each page's (width, height)."""

    kind: str  # "pdf" | "tiff"
    sizes: tuple[tuple[int, int], ...]

    @property
    def pages(self) -> int:
        return len(self.sizes)


def is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:_PDF_MAGIC_WITHIN]


def page_key(key: str, page: int) -> str:
    """The blob key naming page ``page`` (0-based) of the document stored at ``key``."""
    return f"{key}{_PAGE_SEP}{page}"


def split_key(key: str) -> tuple[str, int | None]:
    """(the blob's key, the page) of a key; the page is None for a plain image's key."""
    base, sep, page = key.rpartition(_PAGE_SEP)
    if not sep or not page.isdigit():
        return key, None
    return base, int(page)


def inspect(data: bytes, name: str, settings: Settings) -> DocumentInfo | None:
    """A PDF or a TIFF of several pages, checked; None for anything else (a plain
    image, for :func:`ocrq.images.validate_image`).

    Raises :class:`ImageTooLarge` for too many pages or a page over the pixel
    limits, :class:`InvalidImage` for an encrypted or corrupt PDF.
    """
    if len(data) > settings.max_upload_bytes:
        return None  # the image path refuses it, with the same error as for any image
    if is_pdf(data):
        return DocumentInfo("pdf", _pdf_sizes(data, name, settings))
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        sizes = _tiff_sizes(data, name, settings)
        return DocumentInfo("tiff", sizes) if len(sizes) > 1 else None
    return None


def render_page(data: bytes, page: int, name: str, settings: Settings) -> np.ndarray:
    """Page ``page`` (0-based) of a document as an upright BGR uint8 array."""
    if not is_pdf(data):
        return decode_frame(data, name, page, settings)
    scale = settings.pdf_dpi / 72.0
    with _PDFIUM:
        pdf = _open_pdf(data, name)
        try:
            if not 0 <= page < len(pdf):
                raise InvalidImage(f"{name}: no page {page + 1}", name=name, reason="no_page")
            w, h = pdf.get_page_size(page)
            check_size(_pixels(w, h, scale), f"{name} page {page + 1}", settings)
            pg = pdf[page]
            try:
                bitmap = pg.render(scale=scale)  # BGR: the stages' convention
                out = np.array(bitmap.to_numpy()[:, :, :3])  # copied: the bitmap is freed
            finally:
                pg.close()
        finally:
            pdf.close()
    return np.ascontiguousarray(out)


def pages(data: bytes, name: str, settings: Settings) -> Iterator[np.ndarray]:
    """Every page of a document in turn (one page's pixels in memory at a time)."""
    info = inspect(data, name, settings)
    for i in range(info.pages if info else 0):
        yield render_page(data, i, name, settings)


def assemble(name: str, pages: list[dict[str, Any]]) -> dict[str, Any]:
    """The job document of a document: its pages in order (each a PageResult document
    with its 1-based ``page``), the model versions used and the time per step summed."""
    models: dict[str, int] = {}
    timings: dict[str, float] = {}
    for p in pages:
        models.update(p.get("models") or {})
        for step, ms in (p.get("timings_ms") or {}).items():
            timings[step] = round(timings.get(step, 0.0) + float(ms), 2)
    return {"image": name, "page_count": len(pages),
            "pages": [{**p, "page": i + 1} for i, p in enumerate(pages)],
            "models": models, "timings_ms": timings}


# --- helpers -----------------------------------------------------------------


def _too_many(name: str, n: int | None, settings: Settings) -> ImageTooLarge:
    """``n`` None: more than the limit (a TIFF is not counted past it)."""
    count = f"{n}" if n is not None else f"more than {settings.max_pages}"
    return ImageTooLarge(f"{name}: too many pages ({count}, limit {settings.max_pages})",
                         name=name, reason="too_many_pages", pages=n, limit=settings.max_pages)


def _pixels(w_pt: float, h_pt: float, scale: float) -> tuple[int, int]:
    # The size PDFium's render gives (pypdfium2 rounds up).
    return math.ceil(w_pt * scale), math.ceil(h_pt * scale)


def _open_pdf(data: bytes, name: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium.raw.FPDF_ERR_PASSWORD, pdfium.raw.FPDF_ERR_SECURITY):
            raise InvalidImage(f"{name}: the PDF is encrypted (send it without a password)",
                               name=name, reason="encrypted") from exc
        raise InvalidImage(f"{name}: corrupt or unreadable PDF ({exc})", name=name,
                           reason="corrupt") from exc


def _pdf_sizes(data: bytes, name: str, settings: Settings) -> tuple[tuple[int, int], ...]:
    scale = settings.pdf_dpi / 72.0
    with _PDFIUM:
        pdf = _open_pdf(data, name)
        try:
            n = len(pdf)
            if n > settings.max_pages:
                raise _too_many(name, n, settings)
            if n == 0:
                raise InvalidImage(f"{name}: the PDF has no pages", name=name, reason="empty")
            sizes = []
            for i in range(n):
                try:  # from the page tree alone: nothing is parsed or rendered
                    w, h = pdf.get_page_size(i)
                except pdfium.PdfiumError as exc:
                    raise InvalidImage(f"{name}: page {i + 1} is corrupt ({exc})", name=name,
                                       reason="corrupt", page=i + 1) from exc
                size = _pixels(w, h, scale)
                check_size(size, f"{name} page {i + 1}", settings)
                sizes.append(size)
        finally:
            pdf.close()
    return tuple(sizes)


def _tiff_sizes(data: bytes, name: str, settings: Settings) -> tuple[tuple[int, int], ...]:
    """Each frame's size from its header, stopping one past the page limit (PIL's
    n_frames would walk every IFD of a hostile file first)."""
    sizes: list[tuple[int, int]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            while True:
                if len(sizes) >= settings.max_pages:
                    try:
                        img.seek(len(sizes))
                    except EOFError:
                        break
                    raise _too_many(name, None, settings)
                img.seek(len(sizes))
                check_size(img.size, f"{name} page {len(sizes) + 1}", settings)
                sizes.append(img.size)
    except EOFError:
        pass  # past the last frame
    except (OSError, SyntaxError, ValueError, struct.error,
            Image.DecompressionBombError) as exc:
        if not sizes:
            return ()  # not a TIFF PIL reads: the image path gives its error
        raise InvalidImage(f"{name}: corrupt TIFF page {len(sizes) + 1} ({exc})",
                           name=name, reason="corrupt", page=len(sizes) + 1) from exc
    return tuple(sizes)
