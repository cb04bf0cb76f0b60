"""Several processes materialising an empty repository at once make each version once."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import onnxruntime  # noqa: F401  (loaded before the barrier so the racers start level)

from ocrq.models.builtin import KNOWN_MODELS
from ocrq.models.repository import ModelRepository

PROCESSES = 5


def _racer(root: str, barrier: Barrier, results: Queue) -> None:
    """One process: wait for the others, then materialise the defaults."""
    repo = ModelRepository(Path(root))
    try:
        barrier.wait(timeout=120)
        repo.ensure_defaults()
        results.put("ok")
    except BaseException:  # report anything, so the parent shows why a racer failed
        results.put(traceback.format_exc())


def _run_together(target: Callable[..., None], *args: str) -> list[object]:
    """PROCESSES spawned processes released at once by a barrier; what each reported."""
    # "spawn": fresh interpreters, as separate worker processes would be (no
    # state inherited from pytest's process).
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: Queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    return outcomes


def test_concurrent_ensure_defaults_make_one_version_each(tmp_path: Path) -> None:
    root = tmp_path / "models"
    outcomes = _run_together(_racer, str(root))
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, "\n\n".join(failures)

    repo = ModelRepository(root)
    for name in KNOWN_MODELS:
        assert repo.versions(name) == [1], name
        # No second version folder and no temporary folder left behind.
        assert [p.name for p in (root / name).iterdir()] == ["1"], name
        repo.verify(repo.manifest(name, 1))


def _importer(root: str, weights: str, barrier: Barrier, results: Queue) -> None:
    """One process: wait for the others, then import ``weights`` as the next "dir"."""
    repo = ModelRepository(Path(root))
    try:
        barrier.wait(timeout=120)
        results.put(repo.add_version("dir", Path(weights)).version)
    except BaseException:  # report anything, so the parent shows why an importer failed
        results.put(traceback.format_exc())


def test_concurrent_imports_get_consecutive_versions(tmp_path: Path, model_root: Path) -> None:
    shutil.copytree(model_root / "dir", tmp_path / "dir")
    weights = tmp_path / "retrained.onnx"
    shutil.copy(model_root / "dir" / "1" / "model.onnx", weights)
    outcomes = _run_together(_importer, str(tmp_path), str(weights))
    failures = [str(o) for o in outcomes if not isinstance(o, int)]
    assert not failures, "\n\n".join(failures)
    expected = list(range(2, PROCESSES + 2))
    assert sorted(outcomes) == expected
    repo = ModelRepository(tmp_path)
    assert repo.versions("dir") == [1, *expected]
    for version in expected:
        repo.verify(repo.manifest("dir", version))
