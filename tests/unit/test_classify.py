"""The document classifier (ocrq/suite/classify.py, issue 13) on generated pages:
real OCR of rendered receipts, invoices, forms and cards, then the ``classify``
stage through the plug-in layer, as ``ocrq run --tid classify`` runs it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrq.engine import Engine
from ocrq.errors import ModelIntegrityError
from ocrq.models.builtin import bundled_weights, catalog, model_spec
from ocrq.models.repository import ModelRepository
from ocrq.plans import Plans
from ocrq.plugin_stages import run_stages
from ocrq.suite import classify
from tests.fixtures import INVOICE_LINES, encode, find_font, render_page

RECEIPT = ["CORNER MARKET", "12 Main Street", "Tel 555-123-4567", "25/11/2026 14:32",
           "Milk 2L        3.49", "Bread          2.99", "Eggs x12       4.25",
           "Apples 1kg     2.10", "Coffee 250g    6.80", "Butter         2.45",
           "SUBTOTAL      22.08", "TAX            1.77", "TOTAL         23.85",
           "CASH          30.00", "CHANGE         6.15", "THANK YOU FOR SHOPPING"]
FORM = ["MEMBERSHIP APPLICATION", "Full name", "Address", "Date of birth",
        "Marital status (check one)", "Single", "Married", "Other",
        "Newsletter", "Yes", "No", "Signature"]
CARD = ["Jane Doe", "Senior Engineer", "jane.doe@example.com", "+1 555 123 4567",
        "www.example.com"]
ID_CARD = ["DRIVER LICENSE", "DL 12345678", "DOE JANE", "DOB 02/01/1980",
           "EXP 02/01/2030", "SEX F  HGT 5-06  EYES BRN"]


def receipt_page() -> np.ndarray:
    """Till roll: one narrow monospaced column, much taller than wide."""
    return render_page(RECEIPT, font="DejaVuSansMono", size=24, margin=30)


def invoice_page() -> np.ndarray:
    items = [["Description", "Paper A4", "Blue pens", "Stapler"],
             ["Qty", "2", "1", "1"], ["Amount", "8.40", "3.80", "4.50"]]
    return render_page(INVOICE_LINES[:4], columns=items, width=1240)


def form_page() -> np.ndarray:
    """Labels with empty answer lines, and hollow squares beside the choices."""
    img = Image.new("RGB", (1000, 60 + 56 * len(FORM)), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(find_font()), 28)
    for row, label in enumerate(FORM):
        y = 40 + row * 56
        draw.text((40, y), label, fill="black", font=font)
        if label in ("Single", "Married", "Other", "Yes", "No"):
            draw.rectangle((300, y + 2, 326, y + 28), outline="black", width=2)
        elif label in ("Full name", "Address", "Date of birth", "Signature"):
            draw.line((300, y + 30, 960, y + 30), fill="black", width=2)
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


def card_page(lines: list[str], colour: tuple[int, int, int]) -> np.ndarray:
    """A card of ID-1 proportions (85.60 x 53.98 mm) on a white table."""
    h, w = 400, 634
    card = np.full((h, w, 3), colour, np.uint8)
    text = render_page(lines, size=26, margin=0, line_gap=10)
    th, tw = min(text.shape[0], h - 60), min(text.shape[1], w - 60)
    region = card[30:30 + th, 30:30 + tw]
    card[30:30 + th, 30:30 + tw] = np.minimum(region, text[:th, :tw])
    sheet = np.full((h + 200, w + 200, 3), 255, np.uint8)
    sheet[100:100 + h, 100:100 + w] = card
    return sheet


def classified(engine: Engine, image: np.ndarray) -> dict:
    page = engine.run(image, "page").to_dict()
    return run_stages(engine, image, page, [("classify", {})])


def table_page() -> np.ndarray:
    """A ruled grid of figures with a header row and no document words."""
    rows = [["Region", "Q1", "Q2", "Q3", "Q4"]] + [
        [f"R{i}", *(f"{(i * 37 + j * 11) % 90 + 10}.{j}" for j in range(4))] for i in range(8)]
    img = Image.new("RGB", (1000, 80 + 60 * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(find_font()), 26)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            draw.text((60 + c * 180, 52 + r * 60), cell, fill="black", font=font)
    for r in range(len(rows) + 1):
        draw.line((40, 40 + r * 60, 40 + 5 * 180, 40 + r * 60), fill="black", width=2)
    for c in range(6):
        draw.line((40 + c * 180, 40, 40 + c * 180, 40 + 60 * len(rows)), fill="black", width=2)
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)


LETTER = ["Dear Ms Taylor,", "Thank you for your letter of last week about the garden party.",
          "We would be delighted to come and will bring the chairs you asked for.",
          "My sister will join us in the afternoon if the weather stays fine.",
          "Please let me know whether there is anything else we could bring along.",
          "With kind regards,", "Peter Morgan"]


PAGES = {
    "receipt": receipt_page,
    "invoice": invoice_page,
    "form": form_page,
    "business_card": lambda: card_page(CARD, (235, 225, 200)),
    "id_card": lambda: card_page(ID_CARD, (200, 220, 240)),
    "table_page": table_page,
    "other": lambda: render_page(LETTER, size=24),
}


@pytest.mark.parametrize("label", list(PAGES))
def test_generated_pages_get_their_class(engine: Engine, label: str) -> None:
    doc = classified(engine, PAGES[label]())
    out = doc["document_class"]
    assert out["label"] == label, out
    assert out["confidence"] == max(out["scores"].values()) > 0.5
    assert set(out["scores"]) >= {"receipt", "invoice", "form", "id_card", "business_card",
                                  "table_page", "other"}
    assert abs(sum(out["scores"].values()) - 1) < 1e-3
    assert doc["models"]["cls"] == 1 and doc["timings_ms"]["classify"] > 0


def test_image_features_see_checkboxes_cards_and_rules() -> None:
    params = classify.load_rules(Path(classify.__file__).parent / classify.RULES_FILE).params
    form, invoice = (classify.image_features(f(), params) for f in (form_page, invoice_page))
    card = classify.image_features(card_page(ID_CARD, (200, 220, 240)), params)
    table = classify.image_features(table_page(), params)
    assert form["checkboxes"] >= 4 / params["checkboxes_full"] and invoice["checkboxes"] == 0
    assert card["card"] == 1 and table["card"] == 0 and form["card"] == 0
    assert table["vrules"] == 1 and invoice["vrules"] == 0


def test_text_features_contacts_card_numbers_and_amounts() -> None:
    params = classify.load_rules(Path(classify.__file__).parent / classify.RULES_FILE).params

    def feats(*texts: str) -> dict[str, float]:
        return classify.text_features([{"text": t} for t in texts], params)

    card = feats("Jane Doe", "jane.doe@example.com", "+1 555 123 4567", "www.example.com")
    assert card["email"] == card["url"] == card["phone"] == 1
    assert feats("5412 1234 5656 8888", "VALID THRU 01/28")["card_number"] == 1
    assert feats("Date 12/03/2024", "Invoice 2024-0042")["phone"] == 0  # dates are no phones
    assert feats("TOTAL 12.50", "CASH 20.00")["money_share"] == 1


def test_the_model_is_the_rules_file_pinned_by_sha256(tmp_path: Path) -> None:
    spec = model_spec("cls")
    assert catalog().origin["kind:cls"] == classify.plugin.name
    assert catalog().stages["classify"].models == ("cls",)
    shipped = (Path(classify.__file__).parent / classify.RULES_FILE).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == spec.sha256 == classify.RULES_SHA256
    repo = ModelRepository(tmp_path)
    repo.ensure_defaults([spec])
    manifest = repo.manifest("cls", 1)
    assert manifest.runtime == "json" and manifest.weights_path.read_bytes() == shipped
    with pytest.raises(ModelIntegrityError):
        bundled_weights(dataclasses.replace(spec, sha256="0" * 64))


def test_a_new_version_decides_with_its_own_weights() -> None:
    rules = json.loads((Path(classify.__file__).parent / classify.RULES_FILE).read_text())
    lines = ["INVOICE", "Bill to: ACME", "Total 12.50"]
    assert classify.Classifier.from_rules(rules).classify("\n".join(lines), {})["label"] == \
        "invoice"
    rules["keywords"]["invoice"] = {}
    rules["bias"]["other"] = 9.0
    out = classify.Classifier.from_rules(rules).classify("\n".join(lines), {})
    assert out["label"] == "other" and out["keywords"] == []


def test_only_the_classify_plan_runs_the_stage() -> None:
    plans = Plans.load()
    assert [s.name for s in plans.resolve(None, "classify").steps] == [
        "detect", "recognize", "reorder", "classify"]
    assert "classify" not in [s.name for s in plans.resolve(None, "ocr").steps]


def test_ocrq_run_tid_classify_json_has_the_class(model_root: Path, tmp_path: Path) -> None:
    image = tmp_path / "receipt.png"
    image.write_bytes(encode(receipt_page()))
    env = {**os.environ, "OCRQ_MODEL_ROOT": str(model_root)}

    def run(*args: str) -> dict:
        res = subprocess.run([sys.executable, "-m", "ocrq", "run", "--json", *args, str(image)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    doc = run("--tid", "classify")
    assert doc["document_class"]["label"] == "receipt"
    assert doc["models"]["cls"] == 1 and "classify" in doc["timings_ms"]
    plain = run()
    assert "document_class" not in plain and "classify" not in plain["timings_ms"]
