"""Document classifier: model kind ``cls`` and stage ``classify`` (issue 13).

The class of a page (receipt, invoice, form, id_card, business_card,
credit_card, table_page, other) comes from what was read *and* from the
image. Features are computed here; what they are worth per class lives in the
model, a JSON of keywords and weights (``cls_rules.json``, pinned by sha256),
so a better model, rules or a trained linear layer over the same features,
replaces it with ``ocrq models import cls FILE``.

Score of a class = bias + keyword evidence (distinct phrases found, capped)
+ weights · features; the scores go through a softmax, so ``scores`` sum to 1
and ``confidence`` is the winner's share.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrq.plugins import ModelSpec, Plugin, StageInput, StageSpec

RULES_FILE = "cls_rules.json"
RULES_SHA256 = "f41aeeba8bb2ccee5c98f81e4cd666ff6fe2b9ab2cec4523309db84c04cb0029"
WORK_SIDE = 1000  # image features are measured at this longest side (cost, scale-free)

EMAIL = re.compile(r"[\w.+-]+ ?@ ?[\w-]+(\.[\w-]+)+")
URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|net|org|co\.\w\w|io)\b")
# International (+44 20 ...) or North-American (555) 123-4567 / 555-123-4567: dates and
# amounts, which also are digits and separators, do not match.
PHONE = re.compile(r"\+\d[\d ()./-]{7,}\d|\(\d{2,4}\) ?\d{3,4}[ -]\d{3,4}"
                   r"|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b")
AMOUNT = re.compile(r"\d[.,]\d\d(?!\d)")
DATE = re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}\b")
CARD_NUMBER = re.compile(r"\b(\w{4})[ -](\w{4})[ -](\w{4})[ -](\w{4})\b")


# What the feature code reads from a version's "params" (thresholds and scales).
PARAMS = ("few_lines", "many_lines", "money_share_full", "table_rows_full", "tall_from",
          "tall_span", "long_text_from", "card_number_digits", "rule_min_share",
          "hrules_full", "vrules_full", "box_min", "box_max", "checkboxes_full",
          "card_min_area", "card_ratio_lo", "card_ratio_hi", "card_solid", "card_filled")


def normalise(text: str) -> str:
    """Lower case, accents and compatibility forms folded: 'FACTURA'/'Fáctura' match alike."""
    folded = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(c for c in folded if not unicodedata.combining(c)).split())


@dataclass(frozen=True)
class Classifier:
    """A loaded version of ``cls``: the rules compiled once per load."""

    classes: tuple[str, ...]
    bias: Mapping[str, float]
    keywords: Mapping[str, tuple[tuple[re.Pattern[str], str, float], ...]]
    weights: Mapping[str, Mapping[str, float]]
    params: Mapping[str, float]
    keyword_cap: float
    temperature: float
    version: str

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any]) -> Classifier:
        def pattern(phrase: str) -> re.Pattern[str]:
            # Letters or digits may not touch a phrase ("tin" is not in "printing").
            return re.compile(rf"(?<![a-z0-9]){re.escape(normalise(phrase))}(?![a-z0-9])")

        missing = sorted(set(PARAMS) - set(rules.get("params", {})))
        if missing:  # a version written for other code: refuse it at load, not mid-page
            raise ValueError(f"cls rules lack params {', '.join(missing)}")
        classes = tuple(rules["classes"])
        return cls(
            classes=classes,
            bias={c: float(rules["bias"].get(c, 0.0)) for c in classes},
            keywords={c: tuple((pattern(p), p, float(w))
                               for p, w in rules["keywords"].get(c, {}).items())
                      for c in classes},
            weights={c: dict(rules["weights"].get(c, {})) for c in classes},
            params=dict(rules["params"]),
            keyword_cap=float(rules["keyword_cap"]),
            temperature=float(rules["temperature"]),
            version=str(rules.get("version", "")),
        )

    def classify(self, text: str, features: Mapping[str, float]) -> dict[str, Any]:
        norm = normalise(text)
        raw: dict[str, float] = {}
        found: dict[str, list[str]] = {}
        for c in self.classes:
            hits = [(p, w) for rx, p, w in self.keywords[c] if rx.search(norm)]
            found[c] = [p for p, _ in hits]
            evidence = min(sum(w for _, w in hits), self.keyword_cap)
            raw[c] = self.bias[c] + evidence + sum(
                w * features.get(f, 0.0) for f, w in self.weights[c].items())
        top = max(raw.values())
        exp = {c: math.exp((s - top) / self.temperature) for c, s in raw.items()}
        total = sum(exp.values())
        scores = {c: round(v / total, 4) for c, v in exp.items()}
        label = max(self.classes, key=lambda c: raw[c])
        return {"label": label, "confidence": scores[label], "scores": scores,
                "keywords": found[label][:12]}


# --- features of the recognised text ------------------------------------------------


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _rows(lines: Sequence[Mapping[str, Any]]) -> list[int]:
    """Fragments per printed row: centres within half a line height share a row."""
    boxes = [np.asarray(ln["polygon"], dtype=np.float32) for ln in lines if ln.get("polygon")]
    spans = sorted((float(b[:, 1].mean()), float(np.ptp(b[:, 1])) or 1.0) for b in boxes)
    rows: list[list[float]] = []
    for y, h in spans:
        if rows and abs(y - rows[-1][0]) < 0.5 * h:
            rows[-1][1] += 1
        else:
            rows.append([y, 1])
    return [int(n) for _, n in rows]


def text_features(lines: Sequence[Mapping[str, Any]], p: Mapping[str, float]
                  ) -> dict[str, float]:
    texts = [str(ln.get("text", "")) for ln in lines]
    n = len(texts)
    joined = "\n".join(texts)
    card_numbers = [m for m in CARD_NUMBER.finditer(joined)
                    if sum(ch.isdigit() for ch in m.group(0)) >= p["card_number_digits"]]
    rows = _rows(lines)
    boxes = [np.asarray(ln["polygon"], dtype=np.float32) for ln in lines if ln.get("polygon")]
    aspect = 0.0
    if boxes:
        pts = np.concatenate(boxes)
        aspect = float(np.ptp(pts[:, 1])) / max(float(np.ptp(pts[:, 0])), 1.0)
    chars = sum(len(t) for t in texts)
    return {
        "few_lines": _clip((p["few_lines"] - n) / p["few_lines"]),
        "many_lines": _clip((n - p["many_lines"]) / p["many_lines"]),
        "email": float(bool(EMAIL.search(joined))),
        "url": float(bool(URL.search(joined.lower()))),
        "phone": float(bool(PHONE.search(joined))),
        "date": float(bool(DATE.search(joined))),
        "card_number": float(bool(card_numbers)),
        "mrz": float("<<" in joined),
        "money_share": _clip(sum(bool(AMOUNT.search(t)) for t in texts) / max(n, 1)
                             / p["money_share_full"]),
        "numeric_share": sum(sum(c.isdigit() for c in t) > len(t) / 2 for t in texts)
        / max(n, 1),
        "table_rows": _clip(sum(r >= 3 for r in rows) / max(len(rows), 1)
                            / p["table_rows_full"]),
        "tall": _clip((aspect - p["tall_from"]) / p["tall_span"]),
        "long_text": _clip((chars / max(n, 1) - p["long_text_from"]) / p["long_text_from"]),
        "no_text": float(n == 0),
    }


# --- features of the image -----------------------------------------------------------


def _ink(gray: np.ndarray) -> np.ndarray:
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                 25, 15)


def _rules(ink: np.ndarray, p: Mapping[str, float]) -> tuple[int, int]:
    """Long straight horizontal and vertical strokes (table grids, form fields)."""
    h, w = ink.shape
    out = []
    for kernel, size, along in (((max(w // 25, 3), 1), w, 1), ((1, max(h // 25, 3)), h, 0)):
        opened = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(
            cv2.MORPH_RECT, kernel))
        n, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        spans = stats[1:, cv2.CC_STAT_WIDTH if along else cv2.CC_STAT_HEIGHT]
        out.append(int((spans >= p["rule_min_share"] * size).sum()))
    return out[0], out[1]


def _checkboxes(ink: np.ndarray, p: Mapping[str, float]) -> int:
    """Small hollow squares: outlines with four corners, about as wide as tall."""
    contours, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    side = max(ink.shape)
    lo, hi = p["box_min"] * side, p["box_max"] * side
    centres: list[tuple[float, float]] = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if not (lo <= w <= hi and lo <= h <= hi and abs(w - h) <= 0.2 * max(w, h)):
            continue
        approx = cv2.approxPolyDP(c, 0.04 * cv2.arcLength(c, True), True)
        m = max(w // 6, 1)  # inside the outline
        inside = ink[y + m:y + h - m, x + m:x + w - m]
        if (len(approx) != 4 or cv2.contourArea(c) < 0.8 * w * h or inside.size == 0
                or inside.mean() > 0.2 * 255):
            continue  # not a square outline: a round glyph (O, D), or filled (a bullet)
        cx, cy = x + w / 2, y + h / 2
        if all(abs(cx - a) > 4 or abs(cy - b) > 4 for a, b in centres):
            centres.append((cx, cy))  # a box's inner and outer outline count once
    return len(centres)


def _nonwhite(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    return ((hsv[:, :, 2] < 225) | (hsv[:, :, 1] > 40)).astype(np.uint8) * 255


def _cards(raw: np.ndarray, p: Mapping[str, float]) -> int:
    """Solid, coloured or grey rectangles of a card's proportions (ISO/IEC 7810 ID-1,
    85.60 x 53.98 mm, 1.586) covering a fair part of the image. Solid in the
    raw mask too: a ruled table closes into a rectangle but is mostly paper."""
    k = max(max(raw.shape) // 60, 3)
    mask = cv2.morphologyEx(raw, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area = mask.shape[0] * mask.shape[1]
    cards = 0
    for c in contours:
        (_, _), (w, h), _ = cv2.minAreaRect(c)
        if min(w, h) < 1 or w * h < p["card_min_area"] * area:
            continue
        ratio = max(w, h) / min(w, h)
        solid = cv2.contourArea(c) / (w * h)
        x, y, bw, bh = cv2.boundingRect(c)
        filled = float(raw[y:y + bh, x:x + bw].mean()) / 255
        if (p["card_ratio_lo"] <= ratio <= p["card_ratio_hi"] and solid >= p["card_solid"]
                and filled >= p["card_filled"]):
            cards += 1
    return cards


def image_features(image: np.ndarray, p: Mapping[str, float]) -> dict[str, float]:
    scale = WORK_SIDE / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA) if scale < 1 else image
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    ink = _ink(gray)
    hrules, vrules = _rules(ink, p)
    raw = _nonwhite(small)
    cards = _cards(raw, p)
    h, w = gray.shape
    ratio = max(h, w) / max(min(h, w), 1)
    # The image is itself a card (a cropped photo): its proportions, and not paper.
    card_image = p["card_ratio_lo"] <= ratio <= p["card_ratio_hi"] and (
        float(raw.mean()) / 255 >= p["card_filled"])
    return {
        "hrules": _clip(hrules / p["hrules_full"]),
        "vrules": _clip(vrules / p["vrules_full"]),
        "checkboxes": _clip(_checkboxes(ink, p) / p["checkboxes_full"]),
        "card": float(cards >= 1),
        "cards": _clip(cards / 2),
        "card_image": float(card_image),
    }


# --- the plug-in ---------------------------------------------------------------------


def features(image: np.ndarray, lines: Sequence[Mapping[str, Any]],
             params: Mapping[str, float]) -> dict[str, float]:
    return {**text_features(lines, params), **image_features(image, params)}


def classify_page(image: np.ndarray, page: Mapping[str, Any], model: Classifier
                  ) -> dict[str, Any]:
    lines = list(page.get("lines", []))
    feats = features(image, lines, model.params)
    out = model.classify("\n".join(str(ln.get("text", "")) for ln in lines), feats)
    return {**out, "features": {k: round(v, 3) for k, v in feats.items()}}


def _run(stage: StageInput) -> dict[str, Any]:
    return classify_page(stage.image, stage.page, stage.model("cls").runtime)


def load_rules(path: Path) -> Classifier:
    return Classifier.from_rules(json.loads(path.read_text(encoding="utf-8")))


def rules_sha256() -> str:
    return hashlib.sha256((Path(__file__).parent / RULES_FILE).read_bytes()).hexdigest()


plugin = Plugin(
    name="ocrq-suite-classify",
    kinds=(ModelSpec(name="cls", role="document class (keywords + layout, linear)",
                     sha256=RULES_SHA256, input={"features": "text + image"},
                     package="ocrq", package_version="0.1.0", module="ocrq.suite",
                     resource=RULES_FILE, weights="rules.json", runtime="json",
                     labels=("receipt", "invoice", "form", "id_card", "business_card",
                             "credit_card", "table_page", "other"),
                     load=load_rules),),
    stages=(StageSpec("classify", _run, models=("cls",), hardware="cpu",
                      result_key="document_class"),),
)
