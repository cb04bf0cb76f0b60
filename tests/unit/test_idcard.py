"""ID cards (issue 13): the machine-readable zone with its check digits, the card
finder on generated cards (ocrq/suite/idcard_synth.py, corners known), and the
``document`` plan choosing its branch from the class of a generated ID card and
a generated receipt, in-process as ``ocrq run --tid document`` runs it."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from ocrq.engine import Engine
from ocrq.evaluation.idcard_eval import corner_error
from ocrq.models.builtin import catalog
from ocrq.plans import InvalidPlans, Plans
from ocrq.plugin_stages import run_stages
from ocrq.plugins import StageInput
from ocrq.suite import idcard, idcard_rank, idcard_rank_train, idcard_synth, mrz
from ocrq.suite.idcard_find import find_quad
from tests.fixtures import render_page

TD1 = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6",
       "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]  # ICAO Doc 9303 part 5's specimen
TD3 = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
       "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]  # part 4's specimen


def test_icao_specimens_parse_with_every_check_digit() -> None:
    td1 = mrz.parse(TD1)
    assert td1 is not None and td1["format"] == "TD1" and td1["valid"]
    assert (td1["document_number"], td1["birth_date"], td1["expiry_date"]) == (
        "D23145890", "1974-08-12", "2012-04-15")
    assert (td1["surname"], td1["given_names"]) == ("ERIKSSON", "ANNA MARIA")
    td3 = mrz.parse(TD3)
    assert td3 is not None and td3["format"] == "TD3" and td3["valid"]
    assert td3["document_number"] == "L898902C3" and td3["checks"]["personal_number"]


def test_a_corrupted_digit_fails_its_check_and_the_composite() -> None:
    bad = [TD1[0], TD1[1].replace("740812", "740813"), TD1[2]]
    out = mrz.parse(bad)
    assert out is not None and not out["valid"]
    assert out["checks"]["birth_date"] is False and out["checks"]["composite"] is False
    assert out["checks"]["document_number"] and out["checks"]["expiry_date"]


def test_ocr_noise_in_a_zone_is_undone() -> None:
    # spaces inside rows, a filler read as «, trailing fillers dropped, O read as 0
    rows = ["I<UT0D23145890 7<<<<<<<<<<<<<<", "7408122F1204159UTO«<<<<<<<<<<6",
            "ERIKSS0N<<ANNA<MARIA"]
    out = mrz.parse(rows)
    assert out is not None and out["valid"] and out["issuing_state"] == "UTO"
    assert out["surname"] == "ERIKSSON"


def test_composed_zones_hold_their_check_digits() -> None:
    rows = mrz.compose_td1("ID", "D", "T22000129", "640812", "F", "310731", "D",
                           "MUSTERMANN", "ERIKA")
    assert [len(r) for r in rows] == [30, 30, 30]
    assert mrz.parse(rows)["valid"]  # type: ignore[index]


def test_the_model_is_its_parameters_pinned_by_sha256() -> None:
    spec = catalog().kinds["idd"]
    assert hashlib.sha256(spec.make()).hexdigest() == spec.sha256  # type: ignore[misc]
    assert catalog().stages["idcard"].key == "card"


def test_generated_cards_are_found_within_2pct_of_the_diagonal() -> None:
    """Ten cards (seeds 101-110): every one found, at least 9 within 2% of the diagonal
    (nine are at this commit, seed 109 is 3.3%). The issue's target
    is 95%; the finder reaches about 93-96% on generated sets (BENCHMARKS.md), so
    this guards what it does, not the target."""
    errors = []
    for seed in range(101, 111):
        sample = idcard_synth.generate(np.random.default_rng(seed))
        quad = find_quad(sample.image, idcard.PARAMS)
        assert quad is not None, seed
        errors.append(corner_error(quad.corners, sample.corners))
    assert sum(e <= 0.02 for e in errors) >= 9, [round(e, 4) for e in errors]


def test_without_a_scorer_the_rule_picks_the_card() -> None:
    """Parameters whose ``ranker`` is empty fall back to the hand-written rule (same
    candidates), which still finds these three cards."""
    rule = {**idcard.PARAMS, "ranker": {}}
    for seed in (101, 102, 103):
        sample = idcard_synth.generate(np.random.default_rng(seed))
        quad = find_quad(sample.image, rule)
        assert quad is not None and corner_error(quad.corners, sample.corners) <= 0.02, seed


def test_the_scorer_training_learns_which_candidate_is_the_card() -> None:
    """The listwise fit (idcard_rank_train.train) on made-up candidates whose third
    number says which is the card: the scorer it returns picks that one on fresh
    cards, the same weights on every run (fixed torch seed)."""
    rng = np.random.default_rng(0)

    def cards(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for _ in range(n):
            x = rng.normal(0, 1, (12, 5))
            errors = np.full(12, 0.3)
            errors[int(np.argmax(x[:, 2]))] = 0.005
            out.append((x, errors))
        return out

    train = cards(60)
    net = idcard_rank_train.train(train, good=0.015, hidden=4, epochs=600, seed=0)
    assert net == idcard_rank_train.train(train, good=0.015, hidden=4, epochs=600, seed=0)
    test = cards(40)
    picked = [e[int(np.argmax(idcard_rank.scores_of(x, net)))] for x, e in test]
    assert sum(e <= 0.02 for e in picked) >= 36


def _two_sides(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A scan of a card's two sides, one above the other, on a white page (the
    front, drawn first, on top), and the corners of each."""
    rng = np.random.default_rng(seed)
    page = np.full((1000, 760, 3), 250, np.float32)
    flat = np.array([[0, 0], [idcard_synth.CARD_W, 0],
                     [idcard_synth.CARD_W, idcard_synth.CARD_H], [0, idcard_synth.CARD_H]],
                    np.float32)
    corners = []
    for k in range(2):
        card = idcard_synth.draw_card(rng, idcard_synth.card_fields(rng))
        y0 = 40 + 480 * k
        c = np.array([[80, y0], [680, y0], [680, y0 + 378], [80, y0 + 378]], np.float64)
        m = cv2.getPerspectiveTransform(flat, c.astype(np.float32))
        warped = cv2.warpPerspective(card, m, (760, 1000), flags=cv2.INTER_LINEAR)
        alpha = warped[:, :, 3:4].astype(np.float32) / 255
        page = page * (1 - alpha) + warped[:, :, :3] * alpha
        corners.append(c)
    return np.clip(page, 0, 255).astype(np.uint8), corners


def test_of_a_cards_two_sides_the_front_is_found() -> None:
    """Both sides score alike as cards; the one first in reading order (the front,
    on top) is taken, never the outline around both."""
    for seed in range(4):
        image, (front, _) = _two_sides(seed)
        quad = find_quad(image, idcard.PARAMS)
        assert quad is not None and corner_error(quad.corners, front) <= 0.02, seed


def test_an_outline_too_poorly_supported_leaves_the_page_whole(engine: Engine) -> None:
    """Below ``min_confidence`` the quad found is not trusted: the card is the whole
    image (nothing cropped away), with the quad's own low confidence."""
    sample = idcard_synth.generate(np.random.default_rng(7))
    page = StageInput(sample.image, engine.run(sample.image, "page").to_dict(), {},
                      model=lambda kind: None, read=lambda crop: {})
    found = idcard.card_quad(page, idcard.PARAMS)
    assert found is not None and corner_error(found.corners, sample.corners) <= 0.02
    doubting = idcard.card_quad(page, {**idcard.PARAMS, "min_confidence": 1.01})
    h, w = sample.image.shape[:2]
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    assert doubting is not None and np.allclose(doubting.corners, frame)
    assert doubting.confidence == found.confidence < 1.01


def test_a_side_grown_onto_the_table_shows_table_inside() -> None:
    """A card on a table with a clutter rectangle beside it: the card's own outline
    has card inside every side; the outline grown out to the rectangle's edge holds
    a strip of table along that side, which ``checked`` vetoes."""
    rng = np.random.default_rng(5)
    page = np.full((400, 600, 3), (60, 140, 60), np.uint8)
    cv2.rectangle(page, (40, 60), (120, 340), (90, 60, 200), -1)  # the clutter
    card = np.ascontiguousarray(idcard_synth.draw_card(rng, idcard_synth.card_fields(rng))[
        :, :, :3])
    page[100:100 + 270, 160:160 + 428] = cv2.resize(card, (428, 270))
    lab = cv2.GaussianBlur(cv2.cvtColor(page, cv2.COLOR_BGR2LAB).astype(np.float32),
                           (0, 0), 1.5)
    own = np.array([[160, 100], [587, 100], [587, 369], [160, 369]], np.float64)
    grown = np.array([[120, 100], [587, 100], [587, 369], [120, 369]], np.float64)
    assert idcard_rank.table_inside(own, lab, 10, 12) < 0.5
    assert idcard_rank.table_inside(grown, lab, 10, 12) >= 0.5


def test_a_blank_page_has_no_card() -> None:
    assert find_quad(np.full((600, 800, 3), 255, np.uint8), idcard.PARAMS) is None


def test_then_names_known_tids_only() -> None:
    base = {"steps": ["detect", "recognize", "reorder"]}
    bad = {"tids": {"ocr": base, "doc": {"steps": [
        "detect", "recognize", "reorder",
        {"step": "classify", "options": {"then": {"id_card": "nope"}}}]}}}
    with pytest.raises(InvalidPlans, match="unknown tids nope"):
        Plans(bad)


RECEIPT = ["CORNER MARKET", "12 Main Street", "Tel 555-123-4567", "25/11/2026 14:32",
           "Milk 2L        3.49", "Bread          2.99", "Eggs x12       4.25",
           "SUBTOTAL      10.73", "TAX            0.86", "TOTAL         11.59",
           "CASH          20.00", "CHANGE         8.41", "THANK YOU FOR SHOPPING"]


def _document(engine: Engine, image: np.ndarray) -> dict:
    plans = Plans.load()
    plan = plans.resolve(None, "document")
    steps = [(s.name, dict(s.options)) for s in plan.steps
             if s.name not in ("rotate", "detect", "recognize", "reorder")]
    return run_stages(engine, image, engine.run(image, "page").to_dict(), steps, plans, plan)


def test_the_document_plan_runs_the_id_card_branch_for_a_card(engine: Engine) -> None:
    sample = idcard_synth.generate(np.random.default_rng(7))
    doc = _document(engine, sample.image)
    assert doc["document_class"]["label"] == "id_card"
    assert doc["branch"] == [{"after": "classify", "label": "id_card", "tid": "idcard",
                              "stages": ["idcard"]}]
    card = doc["card"]
    assert card["found"] and corner_error(np.asarray(card["quad"]), sample.corners) <= 0.02
    zone = card["fields"]["mrz"]
    assert zone is not None and zone["format"] == "TD1"
    assert card["fields"]["birth_date"] is not None and "idcard" in doc["timings_ms"]


def test_the_document_plan_adds_nothing_to_a_receipt(engine: Engine) -> None:
    doc = _document(engine, render_page(RECEIPT, font="DejaVuSansMono", size=24, margin=30))
    assert doc["document_class"]["label"] == "receipt"
    assert doc["branch"] == [{"after": "classify", "label": "receipt", "tid": "ocr",
                              "stages": []}]
    assert "card" not in doc and "checkboxes" not in doc


def test_an_image_that_is_the_card_is_its_own_quad(engine: Engine) -> None:
    """A card already cropped (no table around it): the frame is the quad, and the
    crop's reading holds the card's fields."""
    rng = np.random.default_rng(11)
    fields = idcard_synth.card_fields(rng)
    flat = np.ascontiguousarray(idcard_synth.draw_card(rng, fields)[:, :, :3])
    doc = run_stages(engine, flat, engine.run(flat, "card").to_dict(), [("idcard", {})])
    h, w = flat.shape[:2]
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    assert doc["card"]["found"] and corner_error(np.asarray(doc["card"]["quad"]), frame) <= 0.02
    assert doc["card"]["fields"]["mrz"] is not None
