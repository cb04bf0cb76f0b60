"""The test-image helpers behave as other tests assume (deterministic, exact rotations)."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.images import decode_image
from tests.fixtures import (
    INVOICE_LINES,
    add_noise,
    encode,
    find_font,
    jpeg_roundtrip,
    render_page,
    rotate,
)


def test_render_is_deterministic_black_on_white(invoice_page: np.ndarray) -> None:
    again = render_page(INVOICE_LINES)
    assert np.array_equal(again, invoice_page)
    assert invoice_page.dtype == np.uint8 and invoice_page.shape[2] == 3
    assert invoice_page.min() == 0 and invoice_page.max() == 255
    assert (invoice_page == 255).mean() > 0.8  # mostly paper
    ink_rows = np.flatnonzero((invoice_page[..., 0] < 128).any(axis=1))
    assert ink_rows[0] >= 40 and ink_rows[-1] < invoice_page.shape[0] - 30  # margins kept


def test_render_options() -> None:
    wide = render_page(["Total 12.50"], width=800, font="DejaVuSerif", size=20)
    assert wide.shape[1] == 800
    two_cols = render_page(["Heading"], columns=[["left a", "left b"], ["right a"]])
    one_col = render_page(["Heading"], columns=[["left a", "left b"]])
    assert two_cols.shape[0] == one_col.shape[0] and two_cols.shape[1] > one_col.shape[1]


def test_find_font_errors_clearly() -> None:
    assert find_font("DejaVuSansMono").is_file()
    with pytest.raises(FileNotFoundError, match="NoSuchFont.ttf not found.*fonts-dejavu"):
        find_font("NoSuchFont")


def test_rotate(invoice_page: np.ndarray) -> None:
    r90 = rotate(invoice_page, 90)
    assert np.array_equal(r90, np.rot90(invoice_page))
    assert np.array_equal(rotate(r90, 270), invoice_page)
    assert np.array_equal(rotate(invoice_page, 180), invoice_page[::-1, ::-1])
    skew = rotate(invoice_page, 5)
    h, w = invoice_page.shape[:2]
    assert skew.shape[0] > h and skew.shape[1] > w
    assert (skew[0, 0] == 255).all() and (skew[-1, -1] == 255).all()  # white border


def test_noise_and_jpeg(invoice_page: np.ndarray) -> None:
    a, b = add_noise(invoice_page, 10, seed=1), add_noise(invoice_page, 10, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, add_noise(invoice_page, 10, seed=2))
    assert 3 < np.abs(a.astype(np.int16) - invoice_page).mean() < 10
    low = jpeg_roundtrip(invoice_page, 10)
    assert low.shape == invoice_page.shape and not np.array_equal(low, invoice_page)


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "bmp", "webp"])
def test_encode_roundtrips_through_decoder(invoice_page: np.ndarray, fmt: str) -> None:
    out = decode_image(encode(invoice_page, fmt), f"x.{fmt}")
    assert out.shape == invoice_page.shape
