"""A corpus of hostile requests to the intake (Flask test client, real Redis + SQLite):
each one answers a 4xx JSON error, writes no job row and enqueues nothing.

Images are generated here (cv2/PIL) and then truncated, corrupted or given a lying
header; the few edge cases that are valid images (CMYK, 16-bit, alpha, multi-page,
animated WebP, data: URLs) are accepted as the README says, never a 500.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from ocrq.settings import Settings
from tests.conftest import assert_api_error
from tests.fixtures import encode, png_header_only
from tests.unit.test_webhook_delivery import Hostile, answer
from web import create_app

Counts = Callable[[], tuple[int, int]]
Request = dict[str, Any]  # keyword arguments of FlaskClient.open (path, method, data, ...)
PAGE_W, PAGE_H = 200, 64


# --- images ---------------------------------------------------------------------------
@functools.cache
def page() -> np.ndarray:
    img = np.full((PAGE_H, PAGE_W, 3), 255, np.uint8)
    cv2.putText(img, "ocrq 42", (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    return img


@functools.cache
def valid(fmt: str) -> bytes:
    return encode(page(), fmt)


def png() -> bytes:
    return valid("png")


def _chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of every PNG chunk."""
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((pos, kind))
        pos += 12 + length
    return out


def png_bad_crc() -> bytes:
    """Valid pixels; only the IDAT's checksum is wrong."""
    data = bytearray(png())
    pos = next(p for p, kind in _chunks(png()) if kind == b"IDAT")
    end = pos + 8 + struct.unpack(">I", data[pos:pos + 4])[0]
    data[end:end + 4] = bytes(b ^ 0xFF for b in data[end:end + 4])
    return bytes(data)


def png_bad_zlib() -> bytes:
    """IDAT bytes scrambled, CRC recomputed: the stream itself is broken."""
    data = bytearray(png())
    pos = next(p for p, kind in _chunks(png()) if kind == b"IDAT")
    length = struct.unpack(">I", data[pos:pos + 4])[0]
    data[pos + 8:pos + 8 + length] = bytes(range(256)) * (length // 256) + bytes(length % 256)
    crc = zlib.crc32(bytes(data[pos + 4:pos + 8 + length])) & 0xFFFFFFFF
    data[pos + 8 + length:pos + 12 + length] = struct.pack(">I", crc)
    return bytes(data)


def png_tiny_bomb() -> bytes:
    """About 12 kB on the wire for 100 Mpx of 1-bit black (over the pixel limit)."""
    side, z = 10_000, zlib.compressobj(9)
    idat = b"".join(z.compress(bytes(1 + side // 8)) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _tiff_patch(data: bytes, values: dict[int, int]) -> bytes:
    """The TIFF with the inline values of ``values``' tags replaced (little-endian)."""
    out = bytearray(data)
    assert out[:2] == b"II"
    ifd = struct.unpack("<I", out[4:8])[0]
    for i in range(struct.unpack("<H", out[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", out[entry:entry + 4])
        if tag in values:
            fmt = "<H" if kind == 3 else "<I"
            out[entry + 8:entry + 8 + struct.calcsize(fmt)] = struct.pack(fmt, values[tag])
    return bytes(out)


def _bmp_patch(width: int, height: int) -> bytes:
    data = bytearray(valid("bmp"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _frames(fmt: str, scale: int = 1, **kwargs: Any) -> bytes:
    """The page, then a black frame ``scale`` times its size (WebP: frames share one size)."""
    first = Image.fromarray(page()[..., ::-1])
    second = Image.new("RGB", (PAGE_W * scale, PAGE_H * scale), "black")
    buf = io.BytesIO()
    first.save(buf, fmt, save_all=True, append_images=[second], **kwargs)
    return buf.getvalue()


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(page()[..., ::-1]).convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def png16() -> bytes:
    return cv2.imencode(".png", page().astype(np.uint16) * 257)[1].tobytes()


def png_alpha() -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(page(), cv2.COLOR_BGR2BGRA))[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- requests ---------------------------------------------------------------------------
def file(data: bytes, name: str = "page.png", **fields: Any) -> Request:
    return {"data": {"image": (io.BytesIO(data), name), **fields},
            "content_type": "multipart/form-data"}


def body(payload: Any) -> Request:
    return {"json": payload}


def raw(data: bytes | str, content_type: str) -> Request:
    return {"data": data, "content_type": content_type}


def url(u: str) -> Request:
    return body({"image_url": u})


def callback(u: str) -> Request:
    return body({"image_base64": b64(png()), "callback_url": u})


def key(k: str) -> Request:
    return {**file(png()), "headers": {"Idempotency-Key": k}}


def job(path: str, method: str = "GET") -> Request:
    return {"path": path, "method": method}


def deep_json(depth: int) -> Request:
    return raw('{"image_base64": ' + "[" * depth + "]" * depth + "}", "application/json")


def huge_body() -> Request:
    limit = Settings().max_upload_bytes * 4 // 3 + 64 * 1024  # the app's MAX_CONTENT_LENGTH
    return raw(b'{"image_base64": "' + b"A" * limit + b'"}', "application/json")


def multipart_cut() -> Request:
    boundary = "XyZ"
    text = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png()[:50]
    return raw(text, f"multipart/form-data; boundary={boundary}")


def many_parts() -> Request:
    return {"data": {f"f{i}": "x" for i in range(1500)}, "content_type": "multipart/form-data"}


# id -> (request, status, error code). Each is refused before anything is written.
CASES: dict[str, tuple[Callable[[], Request], int, str]] = {
    # corrupt and truncated files of every accepted format
    "png_signature_only": (lambda: file(png()[:8]), 400, "invalid_image"),
    "png_truncated_header": (lambda: file(png()[:20]), 400, "invalid_image"),
    "png_truncated_half": (lambda: file(png()[: len(png()) // 2]), 400, "invalid_image"),
    "png_no_iend": (lambda: file(png()[:-12]), 400, "invalid_image"),
    "png_bad_crc": (lambda: file(png_bad_crc()), 400, "invalid_image"),
    "png_bad_zlib": (lambda: file(png_bad_zlib()), 400, "invalid_image"),
    "jpeg_truncated": (lambda: file(valid("jpeg")[: len(valid("jpeg")) // 2], "a.jpg"),
                       400, "invalid_image"),
    "jpeg_header_only": (lambda: file(valid("jpeg")[:200], "a.jpg"), 400, "invalid_image"),
    "tiff_truncated": (lambda: file(valid("tiff")[: len(valid("tiff")) // 2], "a.tif"),
                       400, "invalid_image"),
    "tiff_strip_past_end": (lambda: file(_tiff_patch(valid("tiff"), {273: 0x7FFFFF00}),
                                         "a.tif"), 400, "invalid_image"),
    "bmp_truncated": (lambda: file(valid("bmp")[: len(valid("bmp")) // 2], "a.bmp"),
                      400, "invalid_image"),
    "bmp_zero_width": (lambda: file(_bmp_patch(0, PAGE_H), "a.bmp"), 400, "invalid_image"),
    "webp_truncated": (lambda: file(valid("webp")[: len(valid("webp")) // 2], "a.webp"),
                       400, "invalid_image"),
    "webp_riff_only": (lambda: file(valid("webp")[:16], "a.webp"), 400, "invalid_image"),
    "not_an_image": (lambda: file(b"%PDF-1.7\n" + b"0" * 100, "a.pdf"), 400, "invalid_image"),
    "svg": (lambda: file(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "a.svg"),
            400, "invalid_image"),
    "animated_gif": (lambda: file(_frames("GIF"), "a.gif"), 400, "invalid_image"),
    "too_small": (lambda: file(encode(np.zeros((4, 4, 3), np.uint8))), 400, "invalid_image"),
    # decompression bombs: refused from the header, nothing allocated
    "png_header_30000": (lambda: file(png_header_only(30_000, 30_000)), 413, "image_too_large"),
    "tiff_header_30000": (lambda: file(_tiff_patch(valid("tiff"), {256: 30_000, 257: 30_000}),
                                       "a.tif"), 413, "image_too_large"),
    "bmp_header_30000": (lambda: file(_bmp_patch(30_000, 30_000), "a.bmp"),
                         413, "image_too_large"),
    "png_tiny_100mpx": (lambda: file(png_tiny_bomb()), 413, "image_too_large"),
    # bodies and content types
    "empty_body": (lambda: raw(b"", "application/json"), 400, "bad_request"),
    "huge_body": (huge_body, 413, "request_entity_too_large"),
    "text_plain": (lambda: raw("image please", "text/plain"), 400, "bad_request"),
    "xml": (lambda: raw("<job><image/></job>", "application/xml"), 400, "bad_request"),
    "raw_png_octet_stream": (lambda: raw(png(), "application/octet-stream"), 400, "bad_request"),
    "urlencoded_base64": (lambda: raw("image_base64=" + b64(png()),
                                      "application/x-www-form-urlencoded"), 400, "bad_request"),
    "multipart_without_file": (lambda: {"data": {"bid": "default"},
                                        "content_type": "multipart/form-data"},
                               400, "bad_request"),
    "multipart_empty_file": (lambda: file(b""), 400, "invalid_image"),
    "multipart_no_boundary": (lambda: raw(b"--x\r\n\r\n", "multipart/form-data"),
                              400, "bad_request"),
    "multipart_cut_short": (multipart_cut, 400, "bad_request"),
    "multipart_too_many_parts": (many_parts, 413, "request_entity_too_large"),
    "multipart_huge_field": (lambda: file(png(), tid="t" * 600_000), 413,
                             "request_entity_too_large"),
    # JSON shapes and types
    "json_nested_100000": (lambda: deep_json(100_000), 400, "bad_request"),
    "json_null": (lambda: raw("null", "application/json"), 400, "bad_request"),
    "json_string": (lambda: body(b64(png())), 400, "bad_request"),
    "json_not_utf8": (lambda: raw(b'{"image_base64": "\xff\xfe"}', "application/json"),
                      400, "bad_request"),
    "json_bid_number": (lambda: body({"image_base64": b64(png()), "bid": 7}), 400, "bad_request"),
    "json_bid_list": (lambda: body({"image_base64": b64(png()), "bid": ["default"]}),
                      400, "bad_request"),
    "json_tid_bool": (lambda: body({"image_base64": b64(png()), "tid": True}), 400, "bad_request"),
    "json_callback_object": (lambda: body({"image_base64": b64(png()),
                                           "callback_url": {"url": "http://example.com"}}),
                             400, "bad_request"),
    "json_base64_number": (lambda: body({"image_base64": 12345}), 400, "bad_request"),
    "json_url_list": (lambda: body({"image_url": ["http://example.com/a.png"]}),
                      400, "bad_request"),
    "json_name_object": (lambda: body({"image_base64": b64(png()), "name": {}}),
                         400, "bad_request"),
    "json_nan": (lambda: raw('{"image_base64": NaN}', "application/json"), 400, "bad_request"),
    "json_both_sources": (lambda: body({"image_base64": b64(png()),
                                        "image_url": "http://example.com/a.png"}),
                          400, "bad_request"),
    "json_long_name": (lambda: body({"image_base64": b64(png()), "name": "n" * 10_000}),
                       400, "bad_request"),
    "json_long_bid": (lambda: body({"image_base64": b64(png()), "bid": "b" * 100_000}),
                      400, "bad_request"),
    "json_long_callback": (lambda: callback("https://example.com/" + "a" * 10_000),
                           400, "bad_request"),
    # base64
    "base64_bad_characters": (lambda: body({"image_base64": "not base64 at all!"}),
                              400, "invalid_image"),
    "base64_bad_padding": (lambda: body({"image_base64": b64(png())[:-3]}), 400, "invalid_image"),
    "base64_of_text": (lambda: body({"image_base64": b64(b"just some text")}),
                       400, "invalid_image"),
    "base64_data_url_text": (lambda: body({"image_base64": "data:text/plain;base64,"
                                                            + b64(b"hello")}),
                             400, "invalid_image"),
    "base64_data_url_not_base64": (lambda: body({"image_base64": "data:image/png,abc"}),
                                   400, "invalid_image"),
    # image_url / callback_url that must never be fetched or posted to
    "url_private_10": (lambda: url("http://10.0.0.1/a.png"), 400, "unsafe_url"),
    "url_private_192": (lambda: url("http://192.168.1.1/a.png"), 400, "unsafe_url"),
    "url_link_local_metadata": (lambda: url("http://169.254.169.254/latest/meta-data/"),
                                400, "unsafe_url"),
    "url_cgnat": (lambda: url("http://100.64.0.1/a.png"), 400, "unsafe_url"),
    "url_nat64_private": (lambda: url("http://[64:ff9b::a00:1]/a.png"), 400, "unsafe_url"),
    "url_nat64_loopback": (lambda: url("http://[64:ff9b::7f00:1]/a.png"), 400, "unsafe_url"),
    "url_nat64_local_use": (lambda: url("http://[64:ff9b:1::a00:1]/a.png"), 400, "unsafe_url"),
    "url_6to4_loopback": (lambda: url("http://[2002:7f00:1::]/a.png"), 400, "unsafe_url"),
    "url_ipv4_compatible": (lambda: url("http://[::127.0.0.1]/a.png"), 400, "unsafe_url"),
    "url_ipv4_mapped": (lambda: url("http://[::ffff:127.0.0.1]/a.png"), 400, "unsafe_url"),
    "url_ipv4_translated": (lambda: url("http://[::ffff:0:7f00:1]/a.png"), 400, "unsafe_url"),
    "url_ipv6_loopback": (lambda: url("http://[::1]/a.png"), 400, "unsafe_url"),
    "url_ipv6_unique_local": (lambda: url("http://[fd00::1]/a.png"), 400, "unsafe_url"),
    "url_ipv6_zone": (lambda: url("http://[fe80::1%25eth0]/a.png"), 400, "unsafe_url"),
    "url_decimal_ipv4": (lambda: url("http://2130706433/a.png"), 400, "unsafe_url"),
    "url_octal_ipv4": (lambda: url("http://0177.0.0.1/a.png"), 400, "unsafe_url"),
    "url_hex_ipv4": (lambda: url("http://0x7f000001/a.png"), 400, "unsafe_url"),
    "url_short_ipv4": (lambda: url("http://127.1/a.png"), 400, "unsafe_url"),
    "url_zero": (lambda: url("http://0.0.0.0/a.png"), 400, "unsafe_url"),
    "url_userinfo_trick": (lambda: url("http://example.com@127.0.0.1/a.png"), 400, "unsafe_url"),
    "url_localhost_dot": (lambda: url("http://localhost./a.png"), 400, "unsafe_url"),
    "url_port_99999": (lambda: url("http://example.com:99999/a.png"), 400, "bad_url"),
    "url_file": (lambda: url("file:///etc/passwd"), 400, "unsafe_url"),
    "url_gopher": (lambda: url("gopher://example.com/_GET"), 400, "unsafe_url"),
    "url_ftp": (lambda: url("ftp://example.com/a.png"), 400, "unsafe_url"),
    "url_javascript": (lambda: url("javascript:alert(1)"), 400, "unsafe_url"),
    "url_data": (lambda: url("data:image/png;base64,iVBORw0KGgo="), 400, "unsafe_url"),
    "callback_metadata": (lambda: callback("http://169.254.169.254/hook"), 400, "unsafe_url"),
    "callback_nat64": (lambda: callback("http://[64:ff9b::a9fe:a9fe]/hook"), 400, "unsafe_url"),
    "callback_decimal": (lambda: callback("http://2130706433/hook"), 400, "unsafe_url"),
    # Idempotency-Key headers
    "key_too_long": (lambda: key("k" * 256), 400, "bad_request"),
    "key_64k_header": (lambda: key("k" * 65_536), 400, "bad_request"),
    "key_control_character": (lambda: key("order\x017"), 400, "bad_request"),
    "key_not_ascii": (lambda: key("commande-\xe9t\xe9"), 400, "bad_request"),
    "key_blank": (lambda: key("   "), 400, "bad_request"),
    # job ids
    "job_id_very_long": (lambda: job("/v1/jobs/" + "a" * 10_000), 404, "not_found"),
    "job_id_unicode": (lambda: job("/v1/jobs/\u30b8\u30e7\u30d6\U0001f600"), 404, "not_found"),
    "job_id_traversal": (lambda: job("/v1/jobs/..%2F..%2Fetc%2Fpasswd"), 404, "not_found"),
    "job_id_dot_dot": (lambda: job("/v1/jobs/../../etc/passwd"), 404, "not_found"),
    "job_id_nul": (lambda: job("/v1/jobs/abc%00def/result"), 404, "not_found"),
    "job_id_sql": (lambda: job("/v1/jobs/' OR '1'='1", "DELETE"), 404, "not_found"),
    "jobs_put": (lambda: {**file(png()), "method": "PUT"}, 405, "method_not_allowed"),
}


@pytest.fixture
def client(web_app: Flask) -> FlaskClient:
    return web_app.test_client()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_request_is_a_4xx_and_writes_nothing(client: FlaskClient, web_counts: Counts,
                                                     case: str) -> None:
    build, status, code = CASES[case]
    request = {"path": "/v1/jobs", "method": "POST", **build()}
    resp = client.open(request.pop("path"), **request)
    assert_api_error(resp, status, code)
    assert "Location" not in resp.headers
    assert web_counts() == (0, 0)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


# --- redirects: every hop is checked --------------------------------------------------
def redirect_to(location: str) -> Hostile:
    return Hostile(answer(302, {"Location": location, "Content-Length": "0"}, []))


@pytest.mark.parametrize("location,status,code", [
    ("file:///etc/passwd", 400, "unsafe_url"), ("gopher://127.0.0.1:6379/_FLUSHALL", 400,
                                                "unsafe_url"),
    ("http://127.0.0.1:99999/a.png", 400, "bad_url"), ("http://[::1/a.png", 400, "bad_url"),
])
def test_a_redirect_is_checked_like_the_first_url(web_settings: Settings, web_counts: Counts,
                                                  location: str, status: int, code: str
                                                  ) -> None:
    # Private addresses allowed, so that the first hop (this machine) is fetched at all.
    client = create_app(web_settings.with_(allow_private_urls=True,
                                           fetch_deadline_s=4.0)).test_client()
    with redirect_to(location) as hop:
        assert_api_error(client.post("/v1/jobs", json={"image_url": hop.url}), status, code)
    assert web_counts() == (0, 0)


def test_a_redirect_server_on_this_machine_is_refused(client: FlaskClient,
                                                      web_counts: Counts) -> None:
    with redirect_to("http://169.254.169.254/") as hop:
        assert_api_error(client.post("/v1/jobs", json={"image_url": hop.url}), 400,
                         "unsafe_url")
        assert hop.heads == []  # never contacted
    assert web_counts() == (0, 0)


# --- valid edge cases: accepted, never a 500 -------------------------------------------
ACCEPTED: dict[str, tuple[Callable[[], Request], tuple[int, int]]] = {
    "cmyk_jpeg": (lambda: file(cmyk_jpeg(), "a.jpg"), (PAGE_W, PAGE_H)),
    "png_16bit": (lambda: file(png16()), (PAGE_W, PAGE_H)),
    "png_alpha": (lambda: file(png_alpha()), (PAGE_W, PAGE_H)),
    "tiff_multipage_first_page": (lambda: file(_frames("TIFF", 2), "a.tif"), (PAGE_W, PAGE_H)),
    "webp_animated_first_frame": (lambda: file(_frames("WEBP", duration=100), "a.webp"),
                                  (PAGE_W, PAGE_H)),
    "base64_data_url": (lambda: body({"image_base64": "data:image/png;base64," + b64(png())}),
                        (PAGE_W, PAGE_H)),
    "base64_wrapped_lines": (lambda: body({"image_base64": base64.encodebytes(png()).decode()}),
                             (PAGE_W, PAGE_H)),
    "base64_padded_with_whitespace": (lambda: body({"image_base64": " " + b64(png()) + "\r\n"}),
                              (PAGE_W, PAGE_H)),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_edge_case_is_accepted(client: FlaskClient, web_counts: Counts,
                                     case: str) -> None:
    build, size = ACCEPTED[case]
    resp = client.post("/v1/jobs", **build())
    assert resp.status_code == 202, resp.get_data(as_text=True)
    image = resp.get_json()["image"]
    assert (image["width"], image["height"]) == size
    rows, queued = web_counts()
    assert rows == 1 and queued >= 1
