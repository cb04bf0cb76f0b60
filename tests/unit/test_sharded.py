"""Data-parallel CPU sessions (runtimes/sharded.py) on the real recogniser."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ocrq.models.registry import ModelRegistry
from ocrq.models.repository import ModelRepository
from ocrq.models.runtimes.onnxruntime import OnnxRuntime
from ocrq.models.runtimes.sharded import ShardedRuntime, run_many
from ocrq.settings import Settings


@pytest.fixture(scope="module")
def rec_path(model_root):
    return ModelRepository(model_root).manifest("str", 1).weights_path


def batches(rows: list[int], width: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal((n, 3, 48, width + 64 * k), dtype=np.float32)
            for k, n in enumerate(rows)]


def test_rows_split_over_copies_read_like_one_session(rec_path):
    single = OnnxRuntime(rec_path, threads=1)
    sharded = ShardedRuntime(lambda: OnnxRuntime(rec_path, threads=1), 2)
    try:
        # Batches of one row (not split), odd and even sizes, in one call and alone.
        work = batches([1, 5, 2, 9, 1])
        expected = [single.run(b) for b in work]
        got = sharded.run_many(work)
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, atol=1e-5)
        np.testing.assert_allclose(sharded.run(work[3]), expected[3], atol=1e-5)
        assert run_many(single, work[:2])[1].shape == expected[1].shape  # plain fallback
    finally:
        sharded.close()


def test_concurrent_callers_get_their_own_rows(rec_path):
    sharded = ShardedRuntime(lambda: OnnxRuntime(rec_path, threads=1), 2)
    work = batches([3, 4, 6, 2])
    expected = [OnnxRuntime(rec_path, threads=1).run(b) for b in work]
    errors: list[BaseException] = []

    def call(k: int) -> None:
        try:
            for _ in range(3):
                np.testing.assert_allclose(sharded.run(work[k]), expected[k], atol=1e-5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sharded.close()
    assert not errors, errors


class Recording:
    """A real session that records the rows of every pass it runs, and can hold
    passes back until the test lets them go (or fail on purpose)."""

    def __init__(self, path, hold: threading.Event | None = None, fail_rows: int = -1) -> None:
        self.inner = OnnxRuntime(path, threads=1)
        self.backend, self.device = self.inner.backend, self.inner.device
        self.rows: list[int] = []
        self.hold, self.fail_rows = hold, fail_rows
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.rows.append(len(batch))
            first = len(self.rows) == 1
        if len(batch) == self.fail_rows:
            raise RuntimeError("this pass fails")
        if self.hold is not None and not first and not self.hold.wait(30):
            raise TimeoutError("held: the caller never got an earlier output")
        return self.inner.run(batch)

    def close(self) -> None:
        self.inner.close()


def whole(stream) -> dict[int, np.ndarray]:
    """A stream's pieces put back together per batch (each row exactly once)."""
    rows: dict[int, dict[int, np.ndarray]] = {}
    for i, first, out in stream:
        for j, row in enumerate(out):
            assert first + j not in rows.setdefault(i, {})
            rows[i][first + j] = row
    return {i: np.stack([r[j] for j in sorted(r)]) for i, r in rows.items()}


def test_stream_gives_every_row_once_as_one_session_reads_it(rec_path):
    single = OnnxRuntime(rec_path, threads=1)
    copies: list[Recording] = []

    def make() -> Recording:
        copies.append(Recording(rec_path))
        return copies[-1]

    # Pieces of at most 2 rows of 48 x 128: a batch of 5 rows comes back in 3.
    sharded = ShardedRuntime(make, 2, piece_elements=2 * 3 * 48 * 128)
    try:
        work = batches([5, 1, 3])
        work[0] = work[0][:, :, :, :128]
        pieces = list(sharded.stream(work, prepare=lambda b: b * 0.5))  # on the copies' threads
        assert len(pieces) == 3 + 1 + 3  # 5 rows in pieces of 2, 1 row, 3 rows one by one
        got = whole(pieces)
        assert sorted(got) == [0, 1, 2]
        for k, b in enumerate(work):
            np.testing.assert_allclose(got[k], single.run(b * 0.5), atol=1e-5)
        assert max(n for c in copies for n in c.rows) <= 2  # the 5 rows went in pieces
    finally:
        sharded.close()


def test_stream_hands_an_output_back_while_later_passes_wait(rec_path):
    # Each copy holds its second pass until the caller has an output in hand: a
    # stream that waited for every pass before yielding would time out here.
    go = threading.Event()
    sharded = ShardedRuntime(lambda: Recording(rec_path, hold=go), 2, piece_elements=3 * 48 * 128)
    try:
        outputs = sharded.stream(batches([1] * 6, width=128))
        first = next(outputs)
        go.set()
        assert len([first, *outputs]) == 6
    finally:
        go.set()
        sharded.close()


def test_stream_raises_a_failed_pass_in_the_caller_and_stays_usable(rec_path):
    sharded = ShardedRuntime(lambda: Recording(rec_path, fail_rows=2), 2)
    try:
        with pytest.raises(RuntimeError, match="this pass fails"):
            list(sharded.stream(batches([1, 2, 1])))  # a pass of 2 rows fails
        again = whole(sharded.stream(batches([1, 1, 1])))  # the pool is free again
        assert [again[k].shape[0] for k in range(3)] == [1, 1, 1]
        stopped = sharded.stream(batches([1] * 5))
        next(stopped)
        stopped.close()
        assert len(whole(sharded.stream(batches([1, 1])))) == 2
    finally:
        sharded.close()


def test_a_stream_the_caller_stops_takes_no_more_pieces(rec_path):
    # Each copy runs its first pass, then holds the next until released; the
    # caller takes one output and stops: each copy finishes the pass it holds
    # and takes no other, so 4 of the 8 passes run at most.
    go = threading.Event()
    copies: list[Recording] = []

    def make() -> Recording:
        copies.append(Recording(rec_path, hold=go))
        return copies[-1]

    sharded = ShardedRuntime(make, 2)
    try:
        stream = sharded.stream(batches([1] * 8))
        next(stream)
        threading.Timer(0.3, go.set).start()
        stream.close()  # returns once the copies have stopped
        assert sum(len(c.rows) for c in copies) <= 4
    finally:
        go.set()
        sharded.close()


def test_a_pass_that_returns_too_few_rows_is_an_error_not_a_blank_line(model_root, rec_path):
    from ocrq.models.states import LoadedModel
    from ocrq.stages import passes
    from ocrq.stages.recognize import RecognizeOptions

    class DropsARow(Recording):
        def run(self, batch: np.ndarray) -> np.ndarray:
            return super().run(batch)[:-1]  # a runtime that lost a row

    manifest = ModelRepository(model_root).manifest("str", 1)
    sharded = ShardedRuntime(lambda: DropsARow(rec_path), 2)
    try:
        model = LoadedModel("str", 1, manifest, sharded)
        crops = [np.full((48, 100, 3), 200, np.uint8) for _ in range(6)]
        opts = RecognizeOptions()
        with pytest.raises(RuntimeError, match="returned 4 rows for 6 crops"):
            list(passes.forward(model, crops, passes.chunks(crops, opts, 48), opts, 48))
    finally:
        sharded.close()


def test_registry_shards_line_models_only(model_root):
    reg = ModelRegistry(ModelRepository(model_root), Settings(model_root=model_root, threads=2))
    assert isinstance(reg.get("str").runtime, ShardedRuntime)
    assert len(reg.get("dir").runtime.copies) == 2  # type: ignore[attr-defined]
    assert isinstance(reg.get("std").runtime, OnnxRuntime)  # one large image: intra-op threads
    one = ModelRegistry(ModelRepository(model_root),
                        Settings(model_root=model_root, threads=2, cpu_copies=1))
    assert isinstance(one.get("str").runtime, OnnxRuntime)


def test_engine_reads_the_same_with_one_session_or_two_copies(model_root, invoice_page):
    from ocrq.engine import Engine

    one = Engine.from_settings(Settings(model_root=model_root, threads=2, cpu_copies=1))
    two = Engine.from_settings(Settings(model_root=model_root, threads=2, cpu_copies=2))
    assert isinstance(two.registry.get("str").runtime, ShardedRuntime)
    a, b = one.run(invoice_page), two.run(invoice_page)
    assert len(a.lines) >= 8
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
