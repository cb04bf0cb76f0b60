"""CPU worker processes share the cores instead of each taking all of them."""

from __future__ import annotations

import os

from ocrq.settings import Settings
from workers.common import split_threads


def test_prefork_children_split_the_cores_unless_threads_are_set():
    cores = os.cpu_count() or 1
    assert split_threads(Settings(), cores).threads == 1
    assert split_threads(Settings(), 1).threads == cores
    assert split_threads(Settings(), 4 * cores).threads == 1  # never 0 (= all cores)
    assert split_threads(Settings(threads=3), cores).threads == 3  # explicit: kept
