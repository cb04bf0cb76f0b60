"""validate_image: the intake's cheaper check agrees with decode_image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ocrq.errors import ImageTooLarge, InvalidImage
from ocrq.images import decode_image, validate_image
from tests.fixtures import INVOICE_LINES, encode, png_header_only, render_page


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    return render_page(INVOICE_LINES[:3])


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp", "webp"])
def test_same_size_as_a_full_decode(page, fmt):
    data = encode(page, fmt)
    h, w = decode_image(data, f"p.{fmt}").shape[:2]
    assert validate_image(data, f"p.{fmt}") == (w, h) == (page.shape[1], page.shape[0])


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_swaps_width_and_height_like_decode(page, orientation):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(page[..., ::-1]).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    data = buf.getvalue()
    h, w = decode_image(data, "exif.jpg").shape[:2]
    assert validate_image(data, "exif.jpg") == (w, h)


@pytest.mark.parametrize("cut", [2, 10, 100])
def test_truncated_jpeg_is_refused(page, cut):
    data = encode(page, "jpeg")
    with pytest.raises(InvalidImage, match="corrupt"):  # header or data, as decode_image
        validate_image(data[: len(data) // cut], "cut.jpg")


def test_limits_and_non_images(page):
    with pytest.raises(ImageTooLarge):
        validate_image(png_header_only(30000, 30000), "bomb.png")
    with pytest.raises(InvalidImage, match="not an image"):
        validate_image(b"hello, world\n", "notes.png")
    with pytest.raises(InvalidImage, match="empty"):
        validate_image(b"", "empty.png")


def _damaged_pngs(data: bytes) -> dict[str, bytes]:
    """The PNG with its IDAT checksum flipped, and the PNG cut before IEND."""
    pos = data.index(b"IDAT") - 4
    end = pos + 8 + int.from_bytes(data[pos:pos + 4], "big")
    bad_crc = data[:end] + bytes(b ^ 0xFF for b in data[end:end + 4]) + data[end + 4:]
    return {"bad_crc": bad_crc, "no_iend": data[:-12]}


@pytest.mark.parametrize("damage", ["bad_crc", "no_iend"])
def test_png_checksums_are_verified_by_both(page, damage):
    data = _damaged_pngs(encode(page, "png"))[damage]
    for check in (validate_image, decode_image):  # PIL alone decodes both without a word
        with pytest.raises(InvalidImage, match="corrupt"):
            check(data, "damaged.png")
