"""Shape buckets (issue 11): which shapes a GPU pass runs at, warm-up coverage, and a
row's result independent of what shares its pass. Runs on CPU with the real models."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ocrq.models.repository import ModelRepository
from ocrq.models.runtime_setup import build_runtime
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.models.runtimes.bucketed import BucketedRuntime
from ocrq.models.runtimes.buckets import DET_SIDES, Buckets, pad_rows
from ocrq.models.runtimes.inputs import Spec, run_images
from ocrq.settings import Settings

DET = {"height": None, "width": None, "multiple": 32}
REC = {"height": 48, "width": None}
DIR = {"height": 48, "width": 192}
ROT = {"height": 224, "width": 224}


class Recording:
    """A real runtime that also records the input shape of every pass."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.backend, self.device = inner, inner.backend, inner.device
        self.shapes: list[tuple[int, ...]] = []
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.shapes.append(tuple(batch.shape))
        return np.asarray(self.inner.run(batch))

    def run_images(self, images: np.ndarray, spec: Spec) -> np.ndarray:
        with self._lock:
            self.shapes.append(tuple(images.shape))
        return run_images(self.inner, images, spec)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def repo(model_root: Path) -> ModelRepository:
    return ModelRepository(model_root)


def test_policy_per_kind_of_model() -> None:
    det, rec, d, rot = (Buckets.from_spec(s) for s in (DET, REC, DIR, ROT))
    assert det.sides == DET_SIDES
    assert det.spatial(1024, 448) == (1024, 512)  # a portrait receipt's first pass
    assert det.spatial(300, 700) == (512, 1024)
    assert det.spatial(2100, 900) == (2560, 1024)  # beyond the sides: multiples of 512
    assert rec.spatial(48, 320) == (48, 320) and rec.spatial(48, 300) == (48, 320)
    assert rec.spatial(48, 40) == (48, 128)
    assert d.spatial(48, 192) == (48, 192) and rot.spatial(224, 224) == (224, 224)
    for b in (det, rec, d, rot):
        for rows, h, w in b.warm_shapes():
            assert rows & (rows - 1) == 0 and rows >= 1  # a power of two
            assert rows * h * w <= max(b.pixel_budget, h * w)
            assert b.spatial(h, w) == (h, w)  # warmed shapes are buckets themselves
    assert rec.batch_size(48, 320) == 32 and rec.batch_size(48, 2560) == 8
    assert det.batch_size(1024, 1024) == 4 and det.batch_size(2048, 2048) == 1


def test_every_shape_a_page_or_line_can_take_is_warmed() -> None:
    det, rec = Buckets.from_spec(DET), Buckets.from_spec(REC)
    warm_det = {(h, w) for _, h, w in det.warm_shapes()}
    for h in range(32, 2049, 32):  # every first-pass size the detect stage makes
        for w in range(32, 2049, 32):
            assert det.spatial(h, w) in warm_det
    warm_rec = {(h, w) for _, h, w in rec.warm_shapes()}
    for w in range(1, 2561):
        assert rec.spatial(48, w) in warm_rec


def test_pad_and_crop_round_trip() -> None:
    det = Buckets.from_spec(DET)
    images = np.random.default_rng(0).integers(0, 255, (2, 700, 300, 3), dtype=np.uint8)
    padded, hw = det.pad(images)
    assert padded.shape == (2, 1024, 512, 3) and hw == (700, 300)
    assert np.array_equal(padded[:, :700, :300], images)
    assert np.array_equal(padded[:, 700:, :300], np.repeat(images[:, -1:], 324, axis=1))
    out = np.zeros((2, 1, 1024, 512), np.float32)
    assert det.crop(out, hw, (1024, 512)).shape == (2, 1, 700, 300)
    assert Buckets.from_dict(det.to_dict()) == det
    assert pad_rows(images[:1], 4).shape[0] == 4 and not pad_rows(images[:1], 4)[1:].any()


def test_every_pass_has_the_fixed_row_count_and_rows_do_not_change(
        repo: ModelRepository) -> None:
    manifest = repo.manifest("str", 1)
    spec = dict(manifest.input)
    rec = Recording(load_runtime("onnxruntime", manifest.weights_path, threads=1))
    buckets = Buckets.from_spec(spec)
    rt = BucketedRuntime(rec, buckets, pad_rows=True)
    rng = np.random.default_rng(1)
    lines = rng.integers(0, 255, (70, 48, 320, 3), dtype=np.uint8)
    together = rt.run_images(lines, spec)
    alone = np.concatenate([rt.run_images(lines[i : i + 1], spec) for i in (0, 1, 69)])
    assert {s[0] for s in rec.shapes} == {32}  # 70 rows: 32 + 32 + 6 padded; 1: padded
    np.testing.assert_array_equal(alone, together[[0, 1, 69]])


def test_merged_calls_run_at_the_fixed_row_count(repo: ModelRepository) -> None:
    manifest = repo.manifest("dir", 1)
    spec = dict(manifest.input)
    rec = Recording(load_runtime("onnxruntime", manifest.weights_path, threads=1))
    buckets = Buckets.from_spec(spec)
    rt = BatchingRuntime(rec, max_wait_ms=300, max_batch=64, rows_per_pass=buckets.batch_size)
    rng = np.random.default_rng(2)
    calls = [rng.integers(0, 255, (n, 48, 192, 3), dtype=np.uint8) for n in (3, 5, 2)]
    outs: list[np.ndarray] = [np.empty(0)] * 3
    barrier = threading.Barrier(3)

    def call(i: int) -> None:
        barrier.wait()
        outs[i] = rt.run_images(calls[i], spec)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(s[0] == 32 for s in rec.shapes)
    assert rt.stats()["merged_calls"] >= 2
    for c, o in zip(calls, outs, strict=True):
        np.testing.assert_array_equal(o, run_images(rec.inner, c, spec))


def test_build_runtime_warms_every_bucket(tmp_path: Path, repo: ModelRepository) -> None:
    settings = Settings(model_root=repo.root, shape_buckets="on", threads=1)
    manifest = repo.manifest("dir", 1)
    rt = build_runtime("dir", manifest.weights_path, settings)
    assert isinstance(rt, BucketedRuntime)
    assert rt.stats()["buckets"] == 1 and rt.warm_s > 0
    off = build_runtime("dir", manifest.weights_path, settings.with_(shape_buckets="off"))
    assert not isinstance(off, BucketedRuntime)  # CPU default: no padding, today's text
    auto = build_runtime("dir", manifest.weights_path, settings.with_(shape_buckets="auto"))
    assert not isinstance(auto, BucketedRuntime)  # auto: buckets on CUDA only


@pytest.mark.parametrize("kind,shape", [("std", (2, 3, 256, 192)), ("str", (2, 3, 48, 320)),
                                        ("dir", (2, 3, 48, 192)), ("rot", (2, 3, 224, 224))])
def test_graph_executor_has_no_host_sync(repo: ModelRepository, kind: str,
                                         shape: tuple[int, ...]) -> None:
    """A CUDA graph captures only device work: a forward pass that read a tensor's
    values on the host (.item(), .tolist(), a shape computed from data) or built a
    tensor on the CPU mid-pass would fail the capture. On the meta device (no data
    at all) the same pass raises in exactly those cases, so this runs without a GPU."""
    torch = pytest.importorskip("torch")  # the torch extra: installed by the dev extra in CI
    from ocrq.models.runtimes.onnx_torch import load_module

    module = load_module(repo.manifest(kind, 1).weights_path, label=kind)
    module.to("meta")
    with torch.no_grad():
        out = module(torch.zeros(shape, device="meta"))
    assert out.device.type == "meta" and out.shape[0] == shape[0]


def test_a_line_models_steps_are_cut_back_to_the_width_it_was_given() -> None:
    # The recognition stage pads crops to a finer grid than a GPU's buckets: the
    # steps the bucket's padding added must not reach the decoder, or a line would
    # read with extra steps and a wrong step width.
    rec, d = Buckets.from_spec(REC), Buckets.from_spec(DIR)
    lines = np.zeros((3, 48, 144, 3), np.uint8)
    padded, hw = rec.pad(lines)
    assert padded.shape == (3, 48, 192, 3) and hw == (48, 144)
    steps = np.arange(3 * 24 * 17, dtype=np.float32).reshape(3, 24, 17)  # 192 / 8
    cut = rec.crop(steps, hw, (48, 192))
    assert cut.shape == (3, 18, 17) and np.array_equal(cut, steps[:, :18])
    assert rec.crop(steps, (48, 192), (48, 192)) is steps  # not padded: as it is
    scores = np.ones((3, 2), np.float32)  # a classifier's scores are no sequence
    assert d.crop(scores, (48, 150), (48, 192)) is scores
    assert rec.crop(scores, hw, (48, 192)) is scores  # not even from a line model
    coarse = np.ones((3, 1, 12, 48), np.float32)  # a map at a quarter of the input
    assert rec.crop(coarse, hw, (48, 192)) is coarse
    odd = rec.crop(steps, (48, 100), (48, 192))  # the network rounds 100 / 8 down
    assert odd.shape == (3, 12, 17)
