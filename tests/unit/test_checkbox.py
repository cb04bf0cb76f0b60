"""Checkbox detection (ocrq/suite/checkbox.py) on generated forms: boxes and radio
buttons of many sizes, empty or ticked with a check mark, a cross or a fill,
labelled with DejaVu text, with scan noise; the detector alone, then the stage
on a page the real engine has read (labels, a page turned 90 degrees)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from ocrq.cli import main
from ocrq.engine import Engine
from ocrq.errors import ModelIntegrityError
from ocrq.models.builtin import catalog, model_spec
from ocrq.models.repository import ModelRepository
from ocrq.plugin_stages import run_stages
from ocrq.settings import Settings
from ocrq.suite.checkbox import PARAMS, PARAMS_SHA256
from ocrq.suite.checkbox_cv import detect, form_ink
from tests.fixtures import _font, add_noise, jpeg_roundtrip

WORDS = ["Married", "Single", "Yes", "No", "Other", "Owner", "Tenant", "Vacant", "Daily",
         "Weekly", "Monthly", "Cash", "Card", "Cheque", "Male", "Female", "Urgent",
         "Email", "Phone", "Post", "Good", "Average", "Poor", "Agree", "Oak", "Door"]


@dataclass(frozen=True)
class Truth:
    x: int
    y: int
    side: int
    shape: str
    ticked: bool
    label: str


def _mark(img: np.ndarray, t: Truth, kind: str, rng: np.random.Generator) -> None:
    x, y, s = t.x, t.y, t.side
    thick = max(1, int(round(s / 9)))
    if kind == "fill":
        pad = max(2, s // 5) if rng.random() < 0.5 else 0
        cv2.rectangle(img, (x + pad, y + pad), (x + s - pad, y + s - pad), 0, -1)
    elif kind == "cross":
        a, b = int(s * 0.2), int(s * 0.8)
        cv2.line(img, (x + a, y + a), (x + b, y + b), 0, thick + 1, cv2.LINE_AA)
        cv2.line(img, (x + b, y + a), (x + a, y + b), 0, thick + 1, cv2.LINE_AA)
    else:  # a check mark, its long stroke often past the box's top right
        over = int(s * rng.uniform(0.0, 0.5))
        pts = np.array([[x + s * 0.2, y + s * 0.5], [x + s * 0.45, y + s * 0.8],
                        [x + s * 0.95 + over * 0.3, y + s * 0.1 - over]], np.int32)
        cv2.polylines(img, [pts], False, 0, thick + 1, cv2.LINE_AA)


def synthetic_form(seed: int, width: int = 1100, rows: int = 9
                   ) -> tuple[np.ndarray, list[Truth]]:
    """A form with rows of labelled boxes (or radio buttons); text with O-like letters."""
    rng = np.random.default_rng(seed)
    side = int(rng.integers(11, 46))
    size = int(np.clip(side * rng.uniform(0.8, 1.2), 14, 40))
    pitch = int(max(side, size) * 2.2)
    page = Image.new("L", (width, pitch * (rows + 2)), 255)
    draw = ImageDraw.Draw(page)
    font = _font("DejaVuSans", size)
    truths: list[Truth] = []
    boxes_in_row = []
    for r in range(rows):
        y = pitch * (r + 1)
        if r % 4 == 3:  # a line of plain text with round letters, no box
            draw.text((40, y), "ORDER CODE 0O0 DOOR GOOD", font=font, fill=0)
            continue
        x = 40
        shape = "circle" if rng.random() < 0.3 else "box"
        while x < width - 8 * side:
            label = str(rng.choice(WORDS))
            truths.append(Truth(x, y, side, shape, bool(rng.random() < 0.4), label))
            boxes_in_row.append(truths[-1])
            tx = x + int(side * 1.6)
            draw.text((tx, y + side // 2 - size // 2 - 2), label, font=font, fill=0)
            x = tx + int(font.getlength(label)) + 3 * side
    img = np.asarray(page).copy()
    for t in truths:
        thick = max(1, int(round(t.side / 14)))
        if t.shape == "box":
            cv2.rectangle(img, (t.x, t.y), (t.x + t.side, t.y + t.side), 0, thick)
            if t.ticked:
                _mark(img, t, str(rng.choice(["check", "cross", "fill"])), rng)
        else:
            c, rad = (t.x + t.side // 2, t.y + t.side // 2), t.side // 2
            cv2.circle(img, c, rad, 0, thick, cv2.LINE_AA)
            if t.ticked:
                cv2.circle(img, c, max(2, int(rad * 0.5)), 0, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return jpeg_roundtrip(add_noise(bgr, float(rng.uniform(2, 12)), seed), 70), truths


def ruled_form(seed: int, width: int = 900, rows: int = 12
               ) -> tuple[np.ndarray, list[Truth]]:
    """A dense ruled table, like a US appraisal form: boxes of 11-16 px that nearly
    fill their cells, touching the rule above or below or the cell's left rule, or
    with their bottom side on the rule itself. Drawn 4 times larger and shrunk, as a
    print is scanned: outlines get light rims, small boxes lose corner pixels."""
    rng = np.random.default_rng(seed)
    s, side = 4, int(rng.integers(11, 17))
    row_h, rule = side + int(rng.integers(2, 5)), int(rng.choice([1, 2]))
    border = float(rng.uniform(1.0, 1.75))
    font = _font("DejaVuSans", int(side * 0.95) * s)
    height = row_h * (rows + 2)
    page = Image.new("L", (width * s, height * s), 255)
    draw = ImageDraw.Draw(page)
    cols = [20, width // 2, width - 20]
    for r in range(1, rows + 2):  # the table's rules
        draw.rectangle([cols[0] * s, row_h * r * s, cols[-1] * s, (row_h * r + rule) * s - 1], 0)
    for x in cols:
        draw.rectangle([x * s, row_h * s, (x + rule) * s - 1, row_h * (rows + 1) * s], 0)
    truths: list[Truth] = []
    for r in range(1, rows + 1):
        top, bottom = row_h * r + rule, row_h * (r + 1)  # the cell between two rules
        for c0, c1 in zip(cols[:-1], cols[1:], strict=False):
            x = c0 + rule + (0 if rng.random() < 0.3 else int(rng.integers(3, 8)))
            while x + side * 8 < c1:
                where = str(rng.choice(["above", "below", "middle", "on"]))
                y = {"above": top, "below": bottom - side, "middle": (top + bottom - side) // 2,
                     "on": bottom + rule - side}[where]
                t = Truth(x, y, side, "box", bool(rng.random() < 0.3), str(rng.choice(WORDS)))
                truths.append(t)
                x0, y0, x1, y1 = x * s, y * s, (x + side) * s - 1, (y + side) * s - 1
                b = int(border * s)
                draw.rectangle([x0, y0, x1, y1], 0)
                draw.rectangle([x0 + b, y0 + b, x1 - b, y1 - b], 255)
                if t.ticked:  # a cross
                    a0, a1 = x0 + 0.2 * side * s, x0 + 0.8 * side * s
                    b0, b1 = y0 + 0.2 * side * s, y0 + 0.8 * side * s
                    draw.line([a0, b0, a1, b1], 0, int(1.6 * s))
                    draw.line([a1, b0, a0, b1], 0, int(1.6 * s))
                tx = x + side + side // 2
                draw.text((tx * s, (top + bottom) / 2 * s), t.label, font=font, fill=0, anchor="lm")
                x = tx + int(font.getlength(t.label) / s) + 2 * side
    img = cv2.resize(np.asarray(page), (width, height), interpolation=cv2.INTER_AREA)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.7))
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return jpeg_roundtrip(add_noise(bgr, float(rng.uniform(2, 8)), seed), 75), truths


def score(boxes: list[dict[str, Any]], truths: list[Truth]) -> dict[str, int]:
    """Truths matched at IoU >= 0.5 (greedily), and of those: right state, right label."""
    used: set[int] = set()
    out = {"found": len(boxes), "truths": len(truths), "matched": 0, "state": 0, "label": 0}
    for t in truths:
        for i, b in enumerate(boxes):
            (x0, y0), (x1, y1) = np.min(b["polygon"], axis=0), np.max(b["polygon"], axis=0)
            inter = (max(0.0, min(x1, t.x + t.side) - max(x0, t.x))
                     * max(0.0, min(y1, t.y + t.side) - max(y0, t.y)))
            if i in used or inter / ((x1 - x0) * (y1 - y0) + t.side ** 2 - inter) < 0.5:
                continue
            used.add(i)
            out["matched"] += 1
            out["state"] += b["ticked"] == t.ticked
            out["label"] += (b["label"] or "").lower() == t.label.lower()
            break
    return out


@pytest.fixture(scope="module")
def engine(model_root: Path) -> Engine:
    return Engine.from_settings(Settings(model_root=model_root, threads=1))


def _boxes(engine: Engine, img: np.ndarray) -> list[dict[str, Any]]:
    doc = run_stages(engine, img, engine.run(img).to_dict(), [("checkbox", {})])
    assert doc["models"]["chk"] == 1 and "checkbox" in doc["timings_ms"]
    return list(doc["checkboxes"]["boxes"])


@pytest.mark.parametrize("seed", [3, 11, 12])  # boxes 39 px (check/cross/fill), 15 px, radios
def test_generated_forms_boxes_found_ticked_and_labelled(engine: Engine, seed: int) -> None:
    img, truths = synthetic_form(seed)
    s = score(_boxes(engine, img), truths)
    # 3 of every 4 rows of the form are boxes; the 4th is text full of O, D and 0
    assert s["matched"] >= 0.9 * s["truths"], s
    assert s["found"] - s["matched"] <= 1, s  # letters are not taken for boxes
    assert s["state"] >= 0.95 * s["matched"] and s["label"] >= 0.9 * s["matched"], s


@pytest.mark.parametrize("seed", [0, 1])  # boxes 16 px (rules 2 px) and 13 px
def test_small_boxes_touching_table_rules_are_found(engine: Engine, seed: int) -> None:
    img, truths = ruled_form(seed)
    s = score(_boxes(engine, img), truths)
    # a side on a rule, a corner pixel lost to the scan: the box is still found
    assert s["matched"] >= 0.93 * s["truths"], s
    assert s["found"] - s["matched"] <= 1, s
    assert s["state"] >= 0.95 * s["matched"] and s["label"] >= 0.9 * s["matched"], s


def test_a_side_on_a_rule_comes_back_but_a_rule_makes_no_box_alone() -> None:
    img = np.full((120, 400), 255, np.uint8)
    cv2.rectangle(img, (10, 60), (390, 61), 0, -1)  # a table rule, 2 px
    cv2.rectangle(img, (100, 47), (113, 61), 0, 1)  # its bottom side is the rule
    img[47:60, 200:213], img[49:58, 202:211] = 0, 255  # 2 px sides, resting on the rule...
    img[47, 200] = 255  # ...a corner pixel lost
    cv2.line(img, (300, 47), (300, 60), 0, 1)  # a "U" open at the top, on the rule
    cv2.line(img, (313, 47), (313, 60), 0, 1)
    found = detect(*form_ink(img, PARAMS), PARAMS)
    assert [(b.x, b.y, b.w, b.h) for b, _ in found] == [(100, 47, 14, 15), (200, 47, 13, 13)]


def test_the_chk_model_materialises_with_its_pinned_sha256(tmp_path: Path) -> None:
    spec = catalog().kinds["chk"]
    assert catalog().origin["kind:chk"] == "ocrq-suite-checkbox"
    assert catalog().stages["checkbox"].models == ("chk",)
    repo = ModelRepository(tmp_path)
    repo.ensure_defaults([model_spec("chk")])
    manifest = repo.manifest("chk", 1)
    blob = manifest.weights_path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == PARAMS_SHA256 == spec.sha256
    assert spec.load is not None and spec.load(manifest.weights_path) == PARAMS
    # parameters changed in code without a new pin are refused before anything is written
    tuned = dataclasses.replace(spec, make=lambda: json.dumps({**PARAMS, "ticked_fill": 0.2}
                                                              ).encode())
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModelRepository(tmp_path / "other").ensure_defaults([tuned])
    assert not (tmp_path / "other" / "chk").exists()


def test_ocrq_run_tid_checkbox_json_on_a_page_scanned_sideways(tmp_path: Path,
                                                               model_root: Path) -> None:
    img, truths = synthetic_form(3)
    w = img.shape[1]
    image = tmp_path / "form.png"
    cv2.imwrite(str(image), cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE))
    env = {"OCRQ_MODEL_ROOT": str(model_root), "OCRQ_THREADS": "1"}
    out = CliRunner().invoke(main, ["run", "--json", "--tid", "checkbox", str(image)], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["rotation"] == 90 and doc["checkboxes"]["count"] == len(doc["checkboxes"]["boxes"])
    boxes = doc["checkboxes"]["boxes"]
    # turned 90 degrees counter-clockwise: upright (x, y) is (y, W - x) as submitted
    for t in truths:
        t_sub = [[t.y, w - t.x], [t.y, w - t.x - t.side], [t.y + t.side, w - t.x - t.side],
                 [t.y + t.side, w - t.x]]  # clockwise from the box's own top-left
        near = [b for b in boxes if np.abs(np.array(b["polygon"]) - t_sub).max() <= 4]
        assert len(near) == 1, (t, [b["polygon"] for b in boxes][:3])
    s = score([{**b, "polygon": [[w - y, x] for x, y in b["polygon"]]} for b in boxes], truths)
    assert s["matched"] == len(truths) and s["state"] == s["matched"], s
