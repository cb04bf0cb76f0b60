"""Generated ID cards with known corners (issue 13: no real labelled set exists).

A card of ID-1 proportions (85.60 x 53.98 mm) is drawn flat: a tinted ground
with guilloche waves, a title, a photo box, labelled fields and a TD1
machine-readable zone whose check digits hold; its corners are rounded. It is
then warped with a random perspective onto a background (solid, gradient,
wood grain, tiles, clutter of other shapes), blurred, given a glare spot and
sensor noise. The truth is the card rectangle's four corners (where its sides
meet, not the rounded outline) on the final image, clockwise from the card's
own top-left.

Everything comes from one ``numpy`` generator seeded by the caller, and the
text is drawn with OpenCV's built-in Hershey fonts, so the same seed gives the
same images on any machine (no system fonts).

``python -m ocrq.suite.idcard_synth OUT --count 200 --seed 13`` writes PNGs and a
``manifest.jsonl`` (``image``, ``label`` = id_card, ``corners``, ``fields``) that
``ocrq eval --task idcard OUT`` scores.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrq.suite.mrz import compose_td1

CARD_W, CARD_H = 856, 540  # 10 px per mm
SURNAMES = ("MUSTERMANN", "ERIKSSON", "ROSSI", "GARCIA", "NOVAK", "SMITH", "DUBOIS", "SILVA")
GIVEN = ("ANNA MARIA", "JOHN", "LUCA", "SOFIA", "PETER", "MARTA", "JEAN PAUL", "ELENA")
STATES = ("UTO", "D", "ITA", "ESP", "CZE", "GBR", "FRA", "PRT")
TITLES = ("IDENTITY CARD", "NATIONAL ID", "RESIDENCE PERMIT", "DRIVER LICENSE")
FONT = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # BGR uint8
    corners: np.ndarray  # 4 x 2, clockwise from the card's top-left
    fields: dict[str, Any]


def _yymmdd(rng: np.random.Generator, lo: int, hi: int) -> str:
    return f"{rng.integers(lo, hi):02d}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"


def card_fields(rng: np.random.Generator) -> dict[str, Any]:
    number = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), 9))
    birth, expiry = _yymmdd(rng, 50, 99), _yymmdd(rng, 27, 40)
    surname, given = str(rng.choice(SURNAMES)), str(rng.choice(GIVEN))
    state = str(rng.choice(STATES))
    sex = str(rng.choice(["F", "M"]))
    mrz = compose_td1("ID", state, number, birth, sex, expiry, state, surname, given)
    return {"title": str(rng.choice(TITLES)), "surname": surname, "given_names": given,
            "document_number": number, "birth": birth, "expiry": expiry, "sex": sex,
            "state": state, "mrz": mrz}


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float, ink: tuple[int, ...],
          thick: int = 2) -> None:
    cv2.putText(img, text, (x, y), FONT, scale, ink, thick, cv2.LINE_AA)


def _ddmmyyyy(yymmdd: str, century: int) -> str:
    return f"{yymmdd[4:]}.{yymmdd[2:4]}.{century + int(yymmdd[:2])}"


def draw_card(rng: np.random.Generator, f: dict[str, Any]) -> np.ndarray:
    """The flat card, BGRA: alpha 0 outside the rounded corners."""
    tint = rng.integers(150, 250, 3)
    img = np.empty((CARD_H, CARD_W, 3), np.uint8)
    img[:] = tint
    xs = np.arange(CARD_W)
    for k in range(int(rng.integers(3, 8))):  # guilloche: faint sine waves
        y0, amp, per = rng.integers(0, CARD_H), rng.integers(10, 60), rng.integers(80, 300)
        ys = (y0 + amp * np.sin(xs * 2 * np.pi / per + k)).astype(np.int32)
        pts = np.stack([xs, ys], axis=1).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, tuple(int(c) for c in tint * 0.85), 2, cv2.LINE_AA)
    band = tuple(int(c) for c in rng.integers(40, 160, 3))
    cv2.rectangle(img, (0, 0), (CARD_W, 70), band, -1)
    _text(img, f["title"], 30, 50, 1.3, (255, 255, 255), 2)
    ink = (30, 30, 30)
    cv2.rectangle(img, (30, 95), (230, 345), (120, 120, 120), -1)  # photo box
    cv2.ellipse(img, (130, 200), (55, 70), 0, 0, 360, (180, 180, 180), -1)
    rows = [("Surname", f["surname"]), ("Given names", f["given_names"]),
            ("Date of birth", _ddmmyyyy(f["birth"], 1900)),
            ("Document No", f["document_number"]),
            ("Date of expiry", _ddmmyyyy(f["expiry"], 2000))]
    for i, (label, value) in enumerate(rows):
        y = 110 + i * 50
        _text(img, label, 260, y, 0.55, (90, 90, 90), 1)
        _text(img, value, 260, y + 26, 0.85, ink, 2)
    cv2.rectangle(img, (0, 382), (CARD_W, CARD_H), (235, 235, 235), -1)  # the zone's strip
    for i, row in enumerate(f["mrz"]):
        _text(img, row, 22, 420 + i * 44, 1.05, ink, 2)
    r = int(CARD_W * rng.uniform(0.03, 0.05))  # rounded corners
    mask = np.zeros((CARD_H, CARD_W), np.uint8)
    cv2.rectangle(mask, (r, 0), (CARD_W - 1 - r, CARD_H - 1), 255, -1)
    cv2.rectangle(mask, (0, r), (CARD_W - 1, CARD_H - 1 - r), 255, -1)
    for cx, cy in ((r, r), (CARD_W - 1 - r, r), (r, CARD_H - 1 - r),
                   (CARD_W - 1 - r, CARD_H - 1 - r)):
        cv2.circle(mask, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return np.dstack([img, mask])


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = int(rng.integers(0, 5))
    base = rng.integers(20, 235, 3).astype(np.float32)
    out = np.empty((h, w, 3), np.float32)
    out[:] = base
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:  # gradient
        other = rng.integers(20, 235, 3).astype(np.float32)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        out = base * (1 - t[..., None]) + other * t[..., None]
    elif kind == 2:  # wood grain
        grain = np.sin(yy / rng.uniform(6, 20) + 3 * np.sin(xx / rng.uniform(60, 200)))
        out = out * (1 + 0.15 * grain[..., None])
    elif kind == 3:  # tiles
        step = int(rng.integers(40, 160))
        out[((yy // step + xx // step) % 2).astype(bool)] *= 0.8
    elif kind == 4:  # clutter: other shapes and lines
        for _ in range(int(rng.integers(1, 5))):
            colour = tuple(float(c) for c in rng.integers(0, 255, 3))
            p = rng.integers(0, [w, h, w, h])
            cv2.rectangle(out, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour,
                          int(rng.choice([-1, 2, 4])))
    out += rng.normal(0, rng.uniform(2, 10), out.shape).astype(np.float32)
    return np.clip(out, 0, 255)


def _placement(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Where the card's four corners land: scaled, turned, tilted, inside the image."""
    area = rng.uniform(0.12, 0.55) * h * w
    cw = np.sqrt(area * CARD_W / CARD_H)
    ch = cw * CARD_H / CARD_W
    rect = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]])
    a = np.deg2rad(rng.uniform(-30, 30))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = rect @ rot.T + rng.normal(0, 0.06 * ch, (4, 2))  # perspective: corners move apart
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    room = np.array([w, h]) - (hi - lo)
    if (room < 8).any():
        pts *= 0.9 * min(w / (hi - lo)[0], h / (hi - lo)[1])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        room = np.array([w, h]) - (hi - lo)
    return pts - lo + rng.uniform(4, np.maximum(room - 4, 5))


def _compose(rng: np.random.Generator, card: np.ndarray, bg: np.ndarray, corners: np.ndarray
             ) -> np.ndarray:
    h, w = bg.shape[:2]
    src = np.array([[0, 0], [CARD_W, 0], [CARD_W, CARD_H], [0, CARD_H]], np.float32)
    m = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    warped = cv2.warpPerspective(card, m, (w, h), flags=cv2.INTER_LINEAR)
    alpha = warped[:, :, 3:4].astype(np.float32) / 255
    shade = rng.uniform(0.75, 1.1)  # the card under other light than the table
    out = bg * (1 - alpha) + warped[:, :, :3].astype(np.float32) * shade * alpha
    if rng.random() < 0.7:  # glare: a bright soft spot
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = corners[rng.integers(0, 4)] * 0.5 + corners.mean(axis=0) * 0.5
        s = rng.uniform(0.05, 0.2) * max(h, w)
        spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) * rng.uniform(0.3, 0.8)
        out = out + (255 - out) * spot[..., None]
    sigma = rng.uniform(0, 2.0)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0, rng.uniform(0, 6), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def generate(rng: np.random.Generator) -> Sample:
    """One card photo; the background is drawn again until it differs from the card."""
    h, w = int(rng.integers(700, 1100)), int(rng.integers(900, 1400))
    fields = card_fields(rng)
    card = draw_card(rng, fields)
    # The colours along the card's outline: title band, ground, the zone's strip.
    edges = [card[y0:y1, 40:-40, :3].reshape(-1, 3).mean(axis=0)
             for y0, y1 in ((5, 15), (200, 210), (CARD_H - 15, CARD_H - 5))]
    corners = _placement(rng, h, w)
    ring = np.zeros((h, w), np.uint8)  # the table just outside the card
    cv2.polylines(ring, [corners.astype(np.int32).reshape(-1, 1, 2)], True, 255, 24)
    for _ in range(30):
        bg = background(rng, h, w)
        near = bg[ring > 0].mean(axis=0)
        if min(float(np.abs(near - e).max()) for e in edges) >= 30:
            break  # a card on a table of its own colour is not what a photo shows
    return Sample(_compose(rng, card, bg, corners), corners, fields)


def write_set(out: Path, count: int, seed: int) -> Path:
    """``count`` cards as PNGs plus manifest.jsonl under ``out``; the manifest's path."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        s = generate(rng)
        name = f"card_{i:04d}.png"
        cv2.imwrite(str(out / name), s.image)
        rows.append(json.dumps({"image": name, "label": "id_card",
                                "corners": np.round(s.corners, 2).tolist(),
                                "fields": {k: v for k, v in s.fields.items() if k != "title"},
                                "seed": seed, "index": i}))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    print(write_set(args.out, args.count, args.seed))


if __name__ == "__main__":
    main()
