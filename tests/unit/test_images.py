"""ocrq.images: every supported format decodes upright to BGR; bad inputs are refused early."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from ocrq.errors import ImageTooLarge, InvalidImage
from ocrq.images import SUPPORTED_FORMATS, decode_image, load_image
from ocrq.settings import Settings
from tests.fixtures import encode, png_header_only

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(model_root=Path("/nonexistent"), database_url="sqlite://")

# Pure colours as RGB, laid out as four 16x16 quadrants of a 32x32 image.
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants() -> Image.Image:
    img = Image.new("RGB", (32, 32))
    for (x, y), colour in zip([(0, 0), (16, 0), (0, 16), (16, 16)], [RED, GREEN, BLUE, WHITE],
                              strict=True):
        img.paste(colour, (x, y, x + 16, y + 16))
    return img


def pil_bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bgr(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.array(rgb[::-1], dtype=np.int16)


def decode(data: bytes, name: str = "x.png", settings: Settings = SETTINGS) -> np.ndarray:
    out = decode_image(data, name, settings)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous
    return out


# --- formats -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp", "webp"])
def test_document_page_decodes_in_every_format(invoice_page: np.ndarray, fmt: str) -> None:
    out = decode(encode(invoice_page, fmt), f"page.{fmt}")
    assert out.shape == invoice_page.shape
    diff = np.abs(out.astype(np.int16) - invoice_page).mean()
    assert diff == 0 if fmt in ("png", "tiff", "bmp") else diff < 4


@pytest.mark.parametrize(("fmt", "tol"), [("PNG", 0), ("TIFF", 0), ("BMP", 0), ("JPEG", 12),
                                          ("WEBP", 12)])
def test_colours_come_out_as_bgr(fmt: str, tol: int) -> None:
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    out = decode(pil_bytes(quadrants(), fmt, **kw)).astype(np.int16)
    for (y, x), colour in zip([(8, 8), (8, 24), (24, 8), (24, 24)], [RED, GREEN, BLUE, WHITE],
                              strict=True):
        assert np.abs(out[y, x] - bgr(colour)).max() <= tol, (fmt, colour, out[y, x])


def test_supported_formats_constant() -> None:
    assert set(SUPPORTED_FORMATS) == {"PNG", "JPEG", "TIFF", "BMP", "WEBP"}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_grayscale_becomes_three_equal_channels(fmt: str) -> None:
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    out = decode(pil_bytes(Image.fromarray(grey, "L"), fmt, **({"quality": 100}
                                                              if fmt == "JPEG" else {})))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(np.int16) - grey).max() <= (3 if fmt == "JPEG" else 0)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_not_clipped(fmt: str) -> None:
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(8, 0).repeat(4, 1)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    out = decode(pil_bytes(img, fmt))
    assert out[0, ::4, 0].tolist() == [0, 1, 128, 255]


def test_16bit_rgb_png() -> None:
    # PIL cannot write 16-bit RGB; cv2 can (BGR order in, RGB order in the file).
    import cv2

    arr = np.zeros((16, 16, 3), np.uint16)
    arr[..., 2] = 65535  # red in BGR
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    out = decode(buf.tobytes())
    assert out[0, 0].tolist() == [0, 0, 255]


def test_rgba_composites_on_white() -> None:
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # fully transparent black
    img.paste((0, 0, 0, 255), (0, 0, 8, 16))  # opaque black left half
    img.paste((0, 0, 0, 128), (8, 8, 16, 16))  # half-transparent black
    out = decode(pil_bytes(img, "PNG"))
    assert out[4, 4].tolist() == [0, 0, 0]
    assert out[4, 12].tolist() == [255, 255, 255]
    assert 120 <= out[12, 12, 0] <= 135


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_alpha_in_other_formats(fmt: str) -> None:
    img = Image.new("RGBA", (16, 16), (0, 0, 255, 0))
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = decode(pil_bytes(img, fmt, **kw))
    assert (out == 255).all()


def test_grey_alpha_and_palette_with_transparency() -> None:
    la = Image.new("LA", (16, 16), (0, 0))
    assert (decode(pil_bytes(la, "PNG")) == 255).all()
    pal = quadrants().convert("P")
    pal.info["transparency"] = pal.getpixel((0, 0))  # red becomes transparent
    out = decode(pil_bytes(pal, "PNG", transparency=pal.getpixel((0, 0))))
    assert out[8, 8].tolist() == [255, 255, 255]
    assert out[24, 8].tolist() == bgr(BLUE).tolist()


def test_palette_and_bilevel() -> None:
    out = decode(pil_bytes(quadrants().convert("P"), "PNG"))
    assert out[8, 24].tolist() == bgr(GREEN).tolist()
    bilevel = Image.new("1", (16, 16), 1)
    bilevel.paste(0, (0, 0, 8, 16))
    for fmt in ("PNG", "TIFF", "BMP"):
        out = decode(pil_bytes(bilevel, fmt))
        assert out[0, 0].tolist() == [0, 0, 0] and out[0, 15].tolist() == [255, 255, 255]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt: str) -> None:
    out = decode(pil_bytes(quadrants().convert("CMYK"), fmt, **({"quality": 95}
                                                              if fmt == "JPEG" else {})))
    tol = 16 if fmt == "JPEG" else 1
    assert np.abs(out[8, 8].astype(np.int16) - bgr(RED)).max() <= tol
    assert np.abs(out[24, 24].astype(np.int16) - bgr(WHITE)).max() <= tol


def test_multipage_tiff_takes_first_frame() -> None:
    first = Image.new("RGB", (20, 10), RED)
    second = Image.new("RGB", (40, 40), BLUE)
    out = decode(pil_bytes(first, "TIFF", save_all=True, append_images=[second]))
    assert out.shape == (10, 20, 3) and out[5, 5].tolist() == bgr(RED).tolist()


# --- EXIF orientation ------------------------------------------------------------


def with_orientation(img: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    kw: dict[str, object] = {"exif": exif.tobytes()}
    if fmt in ("JPEG", "WEBP"):
        kw["quality"] = 95
    return pil_bytes(img, fmt, **kw)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(fmt: str, orientation: int) -> None:
    # JPEG goes through cv2 + our orientation table, PNG/WebP through PIL's
    # exif_transpose: both must agree with PIL's definition.
    src = Image.new("RGB", (48, 32), WHITE)
    src.paste(RED, (0, 0, 16, 16))
    src.paste(BLUE, (32, 16, 48, 32))
    data = with_orientation(src, fmt, orientation)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB"))
    expected = np.asarray(reference)[..., ::-1].astype(np.int16)
    out = decode(data, f"photo.{fmt.lower()}")
    assert out.shape == expected.shape
    assert np.abs(out.astype(np.int16) - expected).mean() < 3


def test_exif_rotate_90_cw_puts_top_left_at_top_right() -> None:
    src = Image.new("RGB", (48, 32), WHITE)
    src.paste(RED, (0, 0, 16, 16))
    out = decode(with_orientation(src, "JPEG", 6), "phone.jpg")  # 6 = rotate 90 CW to view
    assert out.shape == (48, 32, 3)
    assert np.abs(out[4, 28].astype(np.int16) - bgr(RED)).max() < 20
    assert np.abs(out[4, 4].astype(np.int16) - bgr(WHITE)).max() < 20


# --- refusals ---------------------------------------------------------------------


def refused(data: bytes, name: str, exc: type[InvalidImage] = InvalidImage,
            settings: Settings = SETTINGS) -> InvalidImage:
    with pytest.raises(exc) as info:
        decode_image(data, name, settings)
    err = info.value
    assert err.message.startswith(f"{name}: ") and "\n" not in err.message
    assert err.to_dict()["name"] == name and err.to_dict()["code"] == err.code
    return err


def test_empty_file() -> None:
    assert refused(b"", "scan.png").details["reason"] == "empty"


def test_text_file_named_png() -> None:
    err = refused(b"Invoice number: INV-2026-0042\nTotal 12.50\n", "scan.png")
    assert err.message == "scan.png: not an image (unrecognised format)"


def test_unsupported_format_lists_supported() -> None:
    err = refused(pil_bytes(quadrants(), "GIF"), "anim.gif")
    assert "unsupported format GIF" in err.message and "PNG" in err.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_truncated_file(invoice_page: np.ndarray, fmt: str) -> None:
    data = encode(invoice_page, fmt)
    err = refused(data[: len(data) * 2 // 3], f"cut.{fmt.lower()}")
    assert not isinstance(err, ImageTooLarge)
    assert err.details["reason"] in ("corrupt", "unrecognised_format")


def test_one_pixel_image_is_too_small() -> None:
    err = refused(pil_bytes(Image.new("RGB", (1, 1)), "PNG"), "dot.png")
    assert err.details["reason"] == "too_small" and "1x1" in err.message


@pytest.mark.parametrize(("w", "h", "reason"), [
    (30000, 30000, None),  # over PIL's own hard ceiling: refused inside Image.open
    (9000, 9000, "too_many_pixels"),
    (25000, 100, "side_too_long"),
])
def test_oversized_header_refused(w: int, h: int, reason: str | None) -> None:
    err = refused(png_header_only(w, h), "bomb.png", ImageTooLarge)
    assert err.code == "image_too_large"
    if reason:
        assert err.details["reason"] == reason and f"{w}x{h}" in err.message


def test_custom_pixel_limit(invoice_page: np.ndarray) -> None:
    settings = SETTINGS.with_(max_image_pixels=100_000)
    refused(encode(invoice_page, "png"), "page.png", ImageTooLarge, settings)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_bomb_refused_with_bounded_memory() -> None:
    # A fresh process whose peak RSS (VmHWM: per address space, so reset by
    # exec, unlike ru_maxrss which survives it) reflects only this work. The
    # control decodes a real (allowed) 5000x5000 zlib bomb to prove the probe
    # sees large allocations; the refused 9000x9000 one inflates to 243 MB.
    script = """
import json, re
import numpy as np
from ocrq.errors import ImageTooLarge
from ocrq.images import decode_image
from tests.fixtures import encode, png_header_only, png_zlib_bomb

def peak():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

sizes = [(30000, 30000), (9000, 9000), (25000, 100), (100, 25000), (65535, 65535)]
bombs = [png_header_only(w, h) for w, h in sizes] + [png_zlib_bomb(9000, 9000)]
control = png_zlib_bomb(5000, 5000)
decode_image(encode(np.full((16, 16, 3), 255, np.uint8), "png"), "warm.png")
base = peak()
refused = 0
for data in bombs:
    try:
        decode_image(data, "bomb.png")
    except ImageTooLarge:
        refused += 1
bomb = peak() - base
decode_image(control, "control.png")
print(json.dumps({"refused": refused, "bomb": bomb, "control": peak() - base}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["refused"] == 6
    assert result["bomb"] < 50 * 2**20, result
    assert result["control"] > 70 * 2**20, result  # 75 MB of pixels must show up


def test_byte_limit(tmp_path: Path, invoice_page: np.ndarray) -> None:
    data = encode(invoice_page, "png")
    small = SETTINGS.with_(max_upload_bytes=len(data) - 1)
    err = refused(data, "page.png", ImageTooLarge, small)
    assert err.details["reason"] == "too_many_bytes"
    # load_image refuses from stat(): a sparse 64 MiB file is never read.
    big = tmp_path / "huge.png"
    with big.open("wb") as fh:
        fh.truncate(64 * 2**20)
    with pytest.raises(ImageTooLarge, match=r"^huge\.png: file too large"):
        load_image(big, SETTINGS)


def test_load_image(tmp_path: Path, invoice_page: np.ndarray) -> None:
    path = tmp_path / "page.jpg"
    path.write_bytes(encode(invoice_page, "jpeg", quality=90))
    assert load_image(path, SETTINGS).shape == invoice_page.shape
    with pytest.raises(InvalidImage, match="missing.png: cannot read file"):
        load_image(tmp_path / "missing.png", SETTINGS)


def test_repo_sample_decodes() -> None:
    out = load_image(ROOT / "samples" / "receipt.png", SETTINGS)
    assert out.shape[1] >= 500 and out.shape[0] > out.shape[1]
