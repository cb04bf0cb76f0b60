"""The numpy forms of decode's per-gap loops give what the loops gave."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.stages.segments import blank_runs, space_peaks


def _longest_blank_loop(columns: np.ndarray, a: int, b: int) -> int:
    """The per-gap loop that blank_runs replaces (as it was in recognize.py)."""
    seg = columns[max(a, 0) : max(b, 0)]
    best = run = 0
    for has_ink in seg:
        run = 0 if has_ink else run + 1
        best = max(best, run)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_blank_runs_equal_the_loop_on_random_lines(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 120))
    columns = rng.random(n) < rng.uniform(0.05, 0.95)
    # Ranges as decode makes them (ascending, touching) and odd ones: empty,
    # reversed, negative, past the end.
    cuts = np.sort(rng.integers(-5, n + 20, size=int(rng.integers(2, 40))))
    starts = np.concatenate([cuts[:-1], rng.integers(-10, n + 10, size=15)])
    ends = np.concatenate([cuts[1:], rng.integers(-10, n + 10, size=15)])
    got = blank_runs(columns, starts, ends)
    want = [_longest_blank_loop(columns, int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
    assert got.tolist() == want


def test_blank_runs_counts_a_run_only_inside_its_range() -> None:
    columns = np.array([1, 0, 0, 0, 0, 1, 0, 0, 1], bool)
    # The run of four blanks starts before the second range: only two of it count there.
    got = blank_runs(columns, np.array([0, 3, 5, 9]), np.array([3, 6, 9, 12]))
    assert got.tolist() == [2, 2, 2, 0]


@pytest.mark.parametrize("seed", range(10))
def test_space_peaks_equal_the_slices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    space = rng.random(80).astype(np.float32)
    steps = np.sort(rng.choice(80, size=int(rng.integers(1, 30)), replace=False))
    got = space_peaks(space, steps)
    for k in range(1, len(steps)):
        between = space[steps[k - 1] + 1 : steps[k]]
        want = float(between.max()) if between.size else -np.inf
        assert got[k - 1] == want
    assert len(got) == len(steps) - 1
