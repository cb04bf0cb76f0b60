"""``ocrq eval --task checkbox`` on a small generated manifest: the matching and the
scores (detection P/R/F1 at IoU >= 0.5, ticked state on matched boxes)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from click.testing import CliRunner

from ocrq.cli import main
from ocrq.evaluation.checkbox_eval import CheckboxScore, match
from tests.unit.test_checkbox import synthetic_form


def test_matching_is_one_to_one_at_iou_half_and_states_count_on_matches() -> None:
    truth = [((0, 0, 10, 10), True), ((20, 0, 30, 10), False), ((40, 0, 50, 10), False)]
    found = [((1, 1, 11, 11), True), ((0, 0, 10, 10), False), ((21, 0, 31, 10), True),
             ((44, 0, 54, 10), False)]  # IoU 0.43 with the third: no match
    assert sorted(match(found, truth)) == [(1, 0), (2, 1)]
    s = CheckboxScore("x")
    s.add("a", found, truth, 1.0)
    m = s.metrics()
    assert (s.matched, m["precision"], m["recall"]) == (2, 0.5, 2 / 3)
    assert s.states == {"tt": 0, "tf": 1, "ft": 1, "ff": 0} and m["ticked_accuracy"] == 0.0


def test_ocrq_eval_task_checkbox_scores_a_manifest(tmp_path: Path, model_root: Path) -> None:
    img, truths = synthetic_form(11)
    cv2.imwrite(str(tmp_path / "form.png"), img)
    boxes = [{"box": [[t.x, t.y], [t.x + t.side, t.y], [t.x + t.side, t.y + t.side],
                      [t.x, t.y + t.side]], "checked": t.ticked} for t in truths]
    (tmp_path / "manifest.jsonl").write_text(json.dumps(
        {"image": "form.png", "width": img.shape[1], "height": img.shape[0],
         "checkboxes": boxes}) + "\n")
    env = {"OCRQ_MODEL_ROOT": str(model_root)}
    out = CliRunner().invoke(main, ["eval", str(tmp_path), "--task", "checkbox", "--json",
                                    "--threads", "1"], env=env)
    assert out.exit_code == 0, out.output
    (res,) = json.loads(out.stdout)["results"]
    assert res["detector"] == "ocrq" and res["truth"] == len(truths)
    assert res["f1"] >= 0.9 and res["ticked_accuracy"] >= 0.95, res
    table = CliRunner().invoke(main, ["eval", str(tmp_path), "--task", "checkbox",
                                      "--threads", "1"], env=env)
    assert "ticked acc" in table.stdout and "ocrq" in table.stdout
