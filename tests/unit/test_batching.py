"""BatchingRuntime on the real recognition model (ONNX Runtime, CPU).

Threads start together behind a barrier and the wait is long (hundreds of ms)
so they reliably meet; the assertions are on counters and outputs, not times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes import load_runtime
from ocrq.models.runtimes.base import Runtime
from ocrq.models.runtimes.batching import BatchingRuntime
from ocrq.models.runtimes.inputs import normalize
from tests.fixtures import render_page

WORDS = ["Invoice 4711", "Total 12.50", "Paid cash", "Receipt 0042", "Thank you",
         "Blue pens 3.80", "Stapler 4.50", "Paper A4", "Date 25 Nov"]


@pytest.fixture(scope="module")
def str_onnx(model_root: Path) -> tuple[Path, dict[str, Any]]:
    manifest = ModelRepository(model_root).manifest("str", 1)
    return manifest.weights_path, dict(manifest.input)


@pytest.fixture
def inner(str_onnx: tuple[Path, dict[str, Any]]) -> Runtime:
    return load_runtime("onnxruntime", str_onnx[0], threads=1)


def line_batch(words: list[str], spec: dict[str, Any], width: int = 320) -> np.ndarray:
    """Rendered text lines at network height, padded to ``width``, normalised NCHW."""
    out = np.full((len(words), 48, width, 3), 128, np.uint8)
    for i, word in enumerate(words):
        crop = render_page([word], size=24, margin=6)
        w = min(width, int(round(48 * crop.shape[1] / crop.shape[0])))
        out[i, :, :w] = cv2.resize(crop, (w, 48))
    return normalize(out, spec)


def together(fns: list[Callable[[], np.ndarray]]) -> list[np.ndarray | BaseException]:
    """Run every fn in its own thread, released at the same moment."""
    barrier = threading.Barrier(len(fns))
    results: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(fns)

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fns[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_calls_merge_and_each_gets_its_own_rows(
        inner: Runtime, str_onnx: tuple[Path, dict[str, Any]]) -> None:
    spec = str_onnx[1]
    batches = [line_batch(WORDS[i : i + 1 + i % 3], spec) for i in range(6)]  # 1-3 rows each
    alone = [inner.run(b) for b in batches]
    rt = BatchingRuntime(inner, max_wait_ms=500, max_batch=64)
    outs = together([lambda b=b: rt.run(b) for b in batches])
    for got, want in zip(outs, alone, strict=True):
        assert isinstance(got, np.ndarray), got
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    s = rt.stats()
    assert s["calls"] == 6 and s["rows"] == sum(len(b) for b in batches)
    assert s["passes"] < s["calls"], s
    assert s["merged_calls"] >= 2, s


def test_different_shapes_are_not_merged(
        inner: Runtime, str_onnx: tuple[Path, dict[str, Any]]) -> None:
    spec = str_onnx[1]
    narrow = [line_batch(WORDS[i : i + 2], spec, 320) for i in range(3)]
    wide = [line_batch(WORDS[i : i + 2], spec, 384) for i in range(3, 6)]
    rt = BatchingRuntime(inner, max_wait_ms=500, max_batch=64)
    outs = together([lambda b=b: rt.run(b) for b in narrow + wide])
    for got, batch in zip(outs, narrow + wide, strict=True):
        assert isinstance(got, np.ndarray), got
        np.testing.assert_allclose(got, inner.run(batch), atol=1e-5, rtol=1e-5)
    s = rt.stats()
    # One group per width at best; never one pass holding both widths (it would not fit).
    assert 2 <= s["passes"] < 6, s


def test_max_batch_splits_passes(inner: Runtime, str_onnx: tuple[Path, dict[str, Any]]) -> None:
    spec = str_onnx[1]
    batches = [line_batch(WORDS[3 * i : 3 * i + 3], spec) for i in range(3)]  # 3 x 3 rows
    rt = BatchingRuntime(inner, max_wait_ms=500, max_batch=4)
    outs = together([lambda b=b: rt.run(b) for b in batches])
    for got, batch in zip(outs, batches, strict=True):
        assert isinstance(got, np.ndarray), got
        np.testing.assert_allclose(got, inner.run(batch), atol=1e-5, rtol=1e-5)
    s = rt.stats()
    assert s["max_rows"] <= 4 and s["rows"] == 9 and s["passes"] >= 3, s
    # A single call larger than max_batch is split too.
    big = line_batch(WORDS, spec)
    np.testing.assert_allclose(rt.run(big), inner.run(big), atol=1e-5, rtol=1e-5)
    assert rt.stats()["max_rows"] <= 4


def test_inner_error_reaches_every_merged_caller(inner: Runtime) -> None:
    # Four channels: ONNX Runtime rejects the merged pass (a real runtime error).
    bad = [np.zeros((1, 4, 48, 320), np.float32) for _ in range(4)]
    rt = BatchingRuntime(inner, max_wait_ms=500, max_batch=64)
    outs = together([lambda b=b: rt.run(b) for b in bad])
    assert all(isinstance(o, Exception) and "not run" not in str(o) for o in outs), outs
    assert len({type(o) for o in outs}) == 1  # the inner runtime's own error, for everyone
    s = rt.stats()
    assert s["errors"] >= 1 and s["passes"] == 0 and s["calls"] == 4, s
    assert s["merged_calls"] >= 2, s  # the error reached callers that shared a group


def test_close_releases_a_waiting_leader_and_refuses_new_calls(
        inner: Runtime, str_onnx: tuple[Path, dict[str, Any]]) -> None:
    batch = line_batch(WORDS[:2], str_onnx[1])
    want = inner.run(batch)
    rt = BatchingRuntime(inner, max_wait_ms=30_000, max_batch=64)
    threads_before = threading.active_count()
    result: list[np.ndarray] = []
    t = threading.Thread(target=lambda: result.append(rt.run(batch)))
    t0 = time.monotonic()
    t.start()
    while not rt._queues:  # the leader is waiting for companions
        time.sleep(0.005)
    rt.close()
    t.join(timeout=10)
    assert not t.is_alive() and time.monotonic() - t0 < 10  # did not sit out the 30 s wait
    np.testing.assert_allclose(result[0], want, atol=1e-5, rtol=1e-5)
    assert threading.active_count() == threads_before  # no dispatcher thread left behind
    with pytest.raises(RuntimeError, match="closed"):
        rt.run(batch)


def test_registry_wraps_only_batched_models_when_enabled(model_root: Path) -> None:
    from ocrq.models.registry import ModelRegistry
    from ocrq.settings import Settings

    repo = ModelRepository(model_root)
    on = ModelRegistry(repo, Settings(model_root=model_root, threads=1, batch_wait_ms=2.0))
    assert isinstance(on.get("str").runtime, BatchingRuntime)
    assert isinstance(on.get("dir").runtime, BatchingRuntime)
    assert not isinstance(on.get("rot").runtime, BatchingRuntime)
    off = ModelRegistry(repo, Settings(model_root=model_root, threads=1))
    assert not isinstance(off.get("str").runtime, BatchingRuntime)
