"""bench/_machine.py: the numbers the service benches print and the Redis binary they start."""

from __future__ import annotations

import importlib.util
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_machine", BENCH / "_machine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


machine = _load()


@pytest.mark.parametrize("values", [[5.0], [3.0, 1.0], [float(x) for x in range(200, 0, -1)],
                                    [12.5, 80.0, 3.0, 45.0, 45.0, 7.25, 1000.0]])
@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert machine.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        machine.percentile([], 50)


def test_parse_iso_reads_worker_stamps_as_utc() -> None:
    want = datetime(2026, 11, 29, 23, 13, 14, 47000, tzinfo=UTC).timestamp()
    assert machine.parse_iso("2026-11-29T23:13:14.047Z") == want
    assert machine.parse_iso("2026-11-29T23:13:14.047") == want  # naive: stored as UTC
    assert machine.parse_iso("2026-11-30T00:13:14.047+01:00") == want


def test_redis_server_on_the_path_comes_first(tmp_path: Path) -> None:
    skipped, found = tmp_path / "a", tmp_path / "b"
    skipped.mkdir()
    found.mkdir()
    (skipped / "redis-server").write_text("not executable\n")
    exe = found / "redis-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert machine.locate_redis_server(os.pathsep.join([str(skipped), str(found)])) == str(exe)
