"""The recogniser's top-k form (the GPU's, reduced on the device) decodes to the same
text as its full form (stages/ctc.py), with the lexicon's runner-ups in play."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.inputs import run_images
from ocrq.stages.ctc import Scores, pack_top_k
from ocrq.stages.lexicon import get_lexicon
from ocrq.stages.recognize import RecognizeOptions, decode
from tests.fixtures import render_page

LINES = ["Invoice 4711", "TOTAL RM 12.50", "Paid cash 0.00", "Receipt No: 0042",
         "Thank you, come again", "Blue pens 3.80", "Stapler 4.50", "Date 25/11/2026"]


@pytest.fixture(scope="module")
def outputs(model_root: Path) -> tuple[np.ndarray, list[str], dict]:
    manifest = ModelRepository(model_root).manifest("str", 1)
    spec = dict(manifest.input)
    batch = np.full((len(LINES), 48, 640, 3), 128, np.uint8)
    for i, text in enumerate(LINES):
        crop = render_page([text], size=24, margin=6)
        w = min(640, int(round(48 * crop.shape[1] / crop.shape[0])))
        batch[i, :, :w] = cv2.resize(crop, (w, 48))
    rt = load_runtime("onnxruntime", manifest.weights_path, threads=1)
    charset = ["", *manifest.read_charset(), " "]
    return run_images(rt, batch, spec), charset, {"path": manifest.weights_path, "spec": spec,
                                                  "batch": batch}


def test_both_forms_decode_to_the_same_text(outputs: tuple) -> None:
    full, charset, _ = outputs
    opts = RecognizeOptions()
    lexicon = get_lexicon(("en",))
    packed = pack_top_k(full, 8)
    assert packed.shape == (*full.shape[:2], 17)
    texts = []
    for row_full, row_packed in zip(full, packed, strict=True):
        a = decode(row_full, charset, opts, width=640, lexicon=lexicon)
        b = decode(row_packed, charset, opts, width=640, lexicon=lexicon)
        assert a == b
        texts.append(a.text)
    assert "Invoice 4711" in texts  # the lines were read, not just equally empty


def test_runner_ups_are_the_same_in_both_forms() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (40, 300))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    full, top = Scores.of(probs, 300), Scores.of(pack_top_k(probs, 8), 300)
    steps = np.arange(40)
    assert np.array_equal(full.idx, top.idx) and np.array_equal(full.best, top.best)
    assert np.array_equal(full.space, top.space)
    assert full.runners(steps, 0.02, 5) == top.runners(steps, 0.02, 5)
    assert any(len(r) > 1 for r in full.runners(steps, 0.02, 5))  # runner-ups exist
    for s, cands in zip(steps, full.runners(steps, 0.02, 5), strict=True):
        for c in cands:
            assert full.prob(int(s), c) == top.prob(int(s), c)


def test_torch_runtime_reduces_on_the_device(outputs: tuple) -> None:
    pytest.importorskip("torch")  # the torch extra: installed by the dev extra in CI
    from ocrq.models.runtimes.torch import TorchRuntime

    full, charset, m = outputs
    rt = TorchRuntime(m["path"], ctc_topk=8)
    packed = run_images(rt, m["batch"], m["spec"])
    assert packed.shape == (*full.shape[:2], 17)
    opts = RecognizeOptions(languages=())
    for row_full, row_packed in zip(full, packed, strict=True):
        assert decode(row_full, charset, opts, width=640).text == \
            decode(row_packed, charset, opts, width=640).text


def test_top_k_of_many_classes_is_exact() -> None:
    # Many classes take the blockwise search (a block's maximum first); it must
    # find what a full sort finds, wherever the top classes sit: crowded in one
    # block, spread over many, or in the short last block.
    rng = np.random.default_rng(5)
    classes, k = 18_710, 8
    logits = rng.normal(0, 2, (12, classes))
    logits[1, 128:136] += 30  # all eight in one block
    logits[2, rng.choice(classes, 8, replace=False)] += 25  # one per block
    logits[3, classes - 6 :] += 40  # the last, short block
    logits[4, :] = 0.0  # all equal: ties go in class order
    probs = (np.exp(logits - logits.max(1, keepdims=True))).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    packed = pack_top_k(probs[None], k)[0]
    assert packed.shape == (12, 2 * k + 1)
    for row, got in zip(probs, packed, strict=True):
        want = np.argsort(-row, kind="stable")[:k]
        assert got[k : 2 * k].astype(np.int64).tolist() == want.tolist()
        assert np.array_equal(got[:k], row[want]) and got[-1] == row[-1]
    # No steps at all (an empty window) pack to no steps, in either search.
    assert pack_top_k(np.zeros((0, classes), np.float32), k).shape == (0, 2 * k + 1)
    assert pack_top_k(np.zeros((2, 0, 6625), np.float32), k).shape == (2, 0, 2 * k + 1)
    assert pack_top_k(np.zeros((0, 300), np.float32), k).shape == (0, 2 * k + 1)
