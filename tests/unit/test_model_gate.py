"""Evaluation gate: a candidate version scored against the active one with the
metrics of ``ocrq eval`` on rendered, labelled pages (real models, no services)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFont

from ocrq.errors import ModelLoadError
from ocrq.evaluation.gate import run_gate
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings
from tests.fixtures import encode, find_font, render_page

PAGES = [["Invoice number 4711", "Total amount 12.50"], ["Paid by card", "Thank you"]]
SIZE, MARGIN = 28, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered pages with their ground-truth line boxes (from the font metrics)."""
    folder = tmp_path_factory.mktemp("gate-data")
    font = ImageFont.truetype(str(find_font()), SIZE)
    ascent, descent = font.getmetrics()
    pitch = ascent + descent + SIZE // 2
    rows = []
    for i, lines in enumerate(PAGES):
        (folder / f"p{i}.png").write_bytes(encode(render_page(lines, size=SIZE, margin=MARGIN)))
        boxes = []
        for k, text in enumerate(lines):
            x0, y0 = MARGIN, MARGIN + k * pitch
            x1, y1 = x0 + font.getlength(text), y0 + ascent + descent
            boxes.append({"text": text, "box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        rows.append(json.dumps({"image": f"p{i}.png", "lines": boxes}))
    (folder / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    """str v2 = a copy of v1; str v3 = v1 with its conv weights scrambled by noise."""
    import onnx
    from onnx import numpy_helper

    root = tmp_path_factory.mktemp("gate-models")
    repo = ModelRepository(root)
    repo.ensure_defaults()
    v1 = repo.manifest("str", 1).weights_path
    repo.add_version("str", v1)
    model = onnx.load(str(v1))
    rng = np.random.default_rng(0)
    for node in model.graph.node:  # these weights are Constant nodes, not initializers
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value" and len(attr.t.dims) == 4:
                w = numpy_helper.to_array(attr.t)
                noisy = (w * (1 + 0.5 * rng.standard_normal(w.shape))).astype(np.float32)
                attr.t.CopyFrom(numpy_helper.from_array(noisy, attr.t.name))
    noisy_path = root / "noisy.onnx"
    onnx.save(model, str(noisy_path))
    repo.add_version("str", noisy_path)
    garbage = root / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx" * 64)
    repo.add_version("str", garbage)
    return repo


def _settings(repo: ModelRepository) -> Settings:
    return Settings(model_root=repo.root, threads=1)


def test_identical_candidate_passes_with_zero_deltas(repo: ModelRepository, data: Path) -> None:
    gate = run_gate(_settings(repo), "str", 2, 1, data)
    assert gate.passed and gate.deltas == {"word_f1": 0.0, "char_f1": 0.0, "det_recall": 0.0}
    base, cand = (r.corpus for r in gate.results)
    assert base.words.f1 > 0.8  # the baseline really read the pages
    assert [r.engine for r in gate.results] == ["str v1 (active)", "str v2 (candidate)"]


def test_degraded_candidate_fails_the_gate(repo: ModelRepository, data: Path) -> None:
    gate = run_gate(_settings(repo), "str", 3, 1, data, max_drop=0.01)
    assert not gate.passed and gate.deltas["word_f1"] < -0.01
    assert gate.to_dict()["passed"] is False


def test_unloadable_candidate_is_an_error_before_scoring(repo: ModelRepository,
                                                         data: Path) -> None:
    with pytest.raises(ModelLoadError, match="version 4 failed to load"):
        run_gate(_settings(repo), "str", 4, 1, data)


def test_manifest_folder_is_the_eval_format(data: Path) -> None:
    from ocrq.evaluation.dataset import load_manifest

    assert [len(s.lines) for s in load_manifest(data)] == [2, 2]
