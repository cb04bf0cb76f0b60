"""``ocrq eval DIR --task classify`` (ocrq/evaluation/classify_eval.py): the scores
on a hand-made list, and the command end to end on generated, labelled pages."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ocrq.cli import main
from ocrq.evaluation.classify_eval import Predicted, format_report, load_labels, score
from ocrq.evaluation.dataset import DatasetError
from tests.unit.test_classify import ID_CARD, card_page, invoice_page, receipt_page


def predicted(truth: str, label: str) -> Predicted:
    return Predicted(f"{truth}-{label}.png", truth, label, 0.9, 10.0, 900.0)


def test_scores_accuracy_macro_f1_per_class_and_confusion() -> None:
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "a")]
    report = score([predicted(t, p) for t, p in pairs])
    assert report.classes == ["a", "b", "c"]
    assert report.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report.accuracy == pytest.approx(0.6)
    by = {c.label: c for c in report.per_class}
    assert (by["a"].precision, by["a"].recall, by["a"].f1, by["a"].support) == (0.5, 0.5, 0.5, 2)
    assert (by["b"].precision, by["b"].recall, by["b"].f1) == (0.6667, 1.0, 0.8)
    assert (by["c"].precision, by["c"].recall, by["c"].f1) == (0.0, 0.0, 0.0)
    assert report.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    text = format_report(report)
    assert "accuracy 0.600   macro-F1 0.433" in text
    assert "c-a.png: c -> a (0.90)" in text and "mean 10.0" in text


def test_manifest_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.jsonl"):
        load_labels(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"image": "a.png", "label": "x"}\n{"image": 1}\n')
    with pytest.raises(DatasetError, match=r"manifest.jsonl:2: bad manifest row"):
        load_labels(tmp_path)
    assert [r.label for r in load_labels(tmp_path, limit=1)] == ["x"]


def with_transparent_margin(image: np.ndarray) -> np.ndarray:
    """BGRA: the page in the middle of a fully transparent (black, alpha 0) frame, as
    many sample documents are shipped; read as ocrq reads it, the frame is white."""
    bgra = cv2.copyMakeBorder(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA), 120, 120, 160, 160,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0, 0))
    return bgra


def test_ocrq_eval_task_classify_on_generated_pages(tmp_path: Path, model_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"receipt": receipt_page(), "invoice": invoice_page(),
             "id_card": card_page(ID_CARD, (200, 220, 240))}
    rows = []
    for label, image in pages.items():
        cv2.imwrite(str(tmp_path / f"{label}.png"), with_transparent_margin(image))
        rows.append(json.dumps({"image": f"{label}.png", "label": label, "source": "generated"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("OCRQ_MODEL_ROOT", str(model_root))
    res = CliRunner().invoke(main, ["eval", str(tmp_path), "--task", "classify", "--json",
                                    "--threads", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert (doc["pages"], doc["accuracy"], doc["macro_f1"]) == (3, 1.0, 1.0), doc["per_page"]
    assert doc["classes"] == ["id_card", "invoice", "receipt"]
    assert doc["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert doc["tid"] == "classify" and 0 < doc["stage_ms"]["mean"] < doc["ocr_ms"]["mean"]
