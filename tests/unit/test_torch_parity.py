"""Each shipped model: torch runtime vs ONNX Runtime on rendered text (CPU, fp32).

Detection is compared on the raw probability map by max-abs error (ORT's
Sigmoid is approximate for very negative inputs, so relative error would
flag noise); recognition and the classifiers must give identical argmaxes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.onnx_torch import build_module, load_module
from ocrq.models.runtimes.torch import TorchRuntime
from ocrq.settings import Settings
from tests.fixtures import INVOICE_LINES, render_page

LINES = [*INVOICE_LINES[:5], "Qty 3 x 19.99 EUR = 59.97", "ABN 51 824 753 556 Tel: +61 2 9999"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # On a busy 2-core CI box torch's two OpenMP threads spin against each
    # other (5-10x slower than one); parity does not depend on threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    repo = ModelRepository(tmp_path_factory.mktemp("models"))
    repo.ensure_defaults()
    return repo


def weights(repo: ModelRepository, name: str) -> Path:
    return repo.manifest(name).weights_path


def both(repo: ModelRepository, name: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ort_rt = load_runtime("onnxruntime", weights(repo, name))
    torch_rt = load_runtime("torch", weights(repo, name))
    assert torch_rt.backend == "torch" and torch_rt.device == "cpu"
    ref, got = ort_rt.run(batch), torch_rt.run(batch)
    assert got.dtype == np.float32 and got.shape == ref.shape
    return ref, got


def to_batch(images: list[np.ndarray], mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    x = np.stack(images).astype(np.float32) / 255.0
    return ((x - mean) / std).transpose(0, 3, 1, 2).copy()


def line_crops(height: int = 48) -> list[np.ndarray]:
    """One tight crop per line, resized to ``height`` keeping the aspect ratio."""
    crops = []
    for text in LINES:
        img = render_page([text], margin=6, size=26)
        w = int(round(img.shape[1] * height / img.shape[0]))
        crops.append(cv2.resize(img, (w, height), interpolation=cv2.INTER_LINEAR))
    return crops


def pad_to(crops: list[np.ndarray], width: int) -> list[np.ndarray]:
    out = []
    for c in crops:
        c = c[:, :width]
        out.append(cv2.copyMakeBorder(c, 0, 0, 0, width - c.shape[1], cv2.BORDER_CONSTANT,
                                      value=(255, 255, 255)))
    return out


def greedy(probs: np.ndarray) -> list[list[int]]:
    """CTC greedy path: collapse repeats, drop blank (0)."""
    seqs = []
    for row in probs.argmax(-1):
        keep = np.r_[True, row[1:] != row[:-1]] & (row != 0)
        seqs.append(row[keep].tolist())
    return seqs


def detection_input() -> np.ndarray:
    page = render_page(LINES, size=24)
    h, w = (int(np.ceil(s / 32) * 32) for s in page.shape[:2])
    page = cv2.copyMakeBorder(page, 0, h - page.shape[0], 0, w - page.shape[1],
                              cv2.BORDER_CONSTANT, value=(255, 255, 255))
    return to_batch([page])


def test_detection_map_matches(repo: ModelRepository) -> None:
    ref, got = both(repo, "std", detection_input())
    # Max-abs, not relative: the map is ~1e-12 off text and ORT's Sigmoid
    # rounds such values to 0. The logits (steep: |logit| up to ~150) differ by
    # ~1e-5 relative, which the sigmoid turns into ~1e-4 at text borders.
    assert np.abs(got - ref).max() < 1e-3
    text_px = (ref > 0.3).sum()
    assert text_px > 1000  # the map really found the text (the comparison is not vacuous)
    assert np.count_nonzero((got > 0.3) != (ref > 0.3)) <= text_px // 1000


def test_detection_logits_match(repo: ModelRepository) -> None:
    """The same graph cut before its final Sigmoid: logits agree to ~1e-5 relative."""
    model = onnx.load(str(weights(repo, "std")))
    sigmoid = [n for n in model.graph.node if n.op_type == "Sigmoid"][-1]
    assert sigmoid.output[0] == model.graph.output[0].name
    model.graph.output[0].name = sigmoid.input[0]
    model.graph.node.remove(sigmoid)
    x = detection_input()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        got = build_module(model)(torch.from_numpy(x)).numpy()
    assert np.abs(ref).max() > 10
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()


def test_recognition_argmax_identical(repo: ModelRepository) -> None:
    crops = line_crops()
    batch = to_batch(pad_to(crops, max(c.shape[1] for c in crops)))
    ref, got = both(repo, "str", batch)
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert np.abs(got - ref).max() < 1e-3
    charset = repo.manifest("str").read_charset()
    # Class 0 is the CTC blank; the one after the dictionary is the space.
    decoded = ["".join(charset[i - 1] if i <= len(charset) else " " for i in seq)
               for seq in greedy(ref)]
    assert "INV-2026-0042" in decoded[2]  # the model reads the line: the check has teeth


def test_second_recogniser_argmax_identical(repo: ModelRepository) -> None:
    """PP-OCRv6 small (`str2`): GELU's Erf, SAME_UPPER convolution and pooling pads,
    shape scalars (Squeeze/Unsqueeze of Shape) run under torch as under ORT."""
    crops = line_crops()
    width = max(c.shape[1] for c in crops) + 5  # SAME_UPPER 2x2: one pixel, at the end only
    ref, got = both(repo, "str2", to_batch(pad_to(crops, width)))
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert np.abs(got - ref).max() < 1e-3
    charset = repo.manifest("str2").read_charset()
    decoded = ["".join(charset[i - 1] if i <= len(charset) else " " for i in seq)
               for seq in greedy(ref)]
    assert "INV-2026-0042" in decoded[2]  # the model reads the line: the check has teeth


def test_recognition_rows_independent_of_batch(repo: ModelRepository) -> None:
    """A GPU worker merges crops of several jobs into one batch: rows must not interact."""
    rt = TorchRuntime(weights(repo, "str"))
    crops = line_crops()[:5]
    batch = to_batch(pad_to(crops, max(c.shape[1] for c in crops)))
    whole = rt.run(batch)
    parts = np.concatenate([rt.run(batch[:2]), rt.run(batch[2:])])
    np.testing.assert_array_equal(whole.argmax(-1), parts.argmax(-1))
    assert np.abs(whole - parts).max() < 1e-4


def test_direction_classifier_argmax_identical(repo: ModelRepository) -> None:
    crops = pad_to([cv2.resize(c, (min(192, c.shape[1]), 48)) for c in line_crops()], 192)
    crops += [np.ascontiguousarray(c[::-1, ::-1]) for c in crops]  # upside-down copies
    ref, got = both(repo, "dir", to_batch(crops))
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert np.abs(got - ref).max() < 1e-4
    assert set(ref.argmax(-1)) == {0, 1}  # both classes occur


def test_page_orientation_argmax_identical(repo: ModelRepository) -> None:
    page = render_page(LINES, size=24)
    side = max(page.shape[:2])
    page = cv2.copyMakeBorder(page, 0, side - page.shape[0], 0, side - page.shape[1],
                              cv2.BORDER_CONSTANT, value=(255, 255, 255))
    views = [cv2.resize(np.rot90(page, k).copy(), (224, 224), interpolation=cv2.INTER_AREA)
             for k in range(4)]
    rgb = [v[:, :, ::-1] for v in views]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    batch = ((np.stack(rgb) / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2).copy()
    ref, got = both(repo, "rot", batch)
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize("mode", ["autocast", "half"])
def test_fp16_recognition_reads_the_same_text(repo: ModelRepository, mode: str) -> None:
    """fp16 is a CUDA option; TorchRuntime's two fp16 paths are emulated here on CPU."""
    module = load_module(weights(repo, "str"))
    x = torch.from_numpy(to_batch(pad_to(line_crops()[1:4], 480)))  # CPU fp16 is slow: 3 lines
    with torch.inference_mode():
        fp32 = module(x).numpy()
        if mode == "half":
            fp16 = module.half()(x.half()).float().numpy()
        else:
            module.half_weights()
            with torch.autocast("cpu", torch.float16):
                fp16 = module(x).float().numpy()
    assert greedy(fp16) == greedy(fp32)
    assert 0 < np.abs(fp16 - fp32).max() < 0.05  # really ran in reduced precision


def test_cuda_request_uses_the_gpu_or_falls_back_to_cpu(repo: ModelRepository) -> None:
    rt = load_runtime("torch", weights(repo, "dir"), device="cuda", fp16=True)
    has_gpu = torch.cuda.is_available()
    assert rt.device == ("cuda:0" if has_gpu else "cpu")
    assert rt.fp16 is has_gpu  # type: ignore[attr-defined]  # fp16 is ignored on CPU
    assert rt.run(np.zeros((2, 3, 48, 192), np.float32)).shape == (2, 2)
    rt.close()


def test_settings_select_the_torch_runtime(repo: ModelRepository) -> None:
    from ocrq.models.registry import ModelRegistry

    settings = Settings.from_env({"OCRQ_RUNTIME": "torch", "OCRQ_DEVICE": "cpu"},
                                 model_root=repo.root)
    model = ModelRegistry(repo, settings).get("dir")
    assert model.runtime.backend == "torch" and model.runtime.device == "cpu"


def test_engine_torch_reads_the_same_page_as_onnxruntime(
    repo: ModelRepository, invoice_page: np.ndarray
) -> None:
    from ocrq.engine import Engine

    pages = {}
    for runtime in ("onnxruntime", "torch"):
        settings = Settings(model_root=repo.root, runtime=runtime, device="cpu")
        engine = Engine.from_settings(settings)
        pages[runtime] = engine.run(invoice_page, name="invoice.png")
        assert {s.backend for s in engine.registry.states()} == {runtime}
    ref, got = pages["onnxruntime"], pages["torch"]
    assert [ln.text for ln in got.lines] == [ln.text for ln in ref.lines]
    assert [ln.polygon for ln in got.lines] == [ln.polygon for ln in ref.lines]
    assert got.rotation == ref.rotation
    assert any("INV-2026-0042" in ln.text for ln in ref.lines)


def test_recogniser_exports_with_dynamic_batch_and_width(repo: ModelRepository) -> None:
    """The full recogniser (Shape/Slice/Concat/Reshape chains) exports without freezing sizes."""
    from torch.export import Dim

    module = load_module(weights(repo, "str"))
    exported = torch.export.export(module, (torch.rand(2, 3, 48, 320),),
                                   dynamic_shapes={"x": {0: Dim.DYNAMIC, 3: Dim.DYNAMIC}})
    assert len(exported.range_constraints) == 2  # batch and width stayed symbolic
    x = torch.from_numpy(to_batch(pad_to(line_crops()[:3], 400)))
    with torch.inference_mode():
        np.testing.assert_array_equal(exported.module()(x).argmax(-1), module(x).argmax(-1))
