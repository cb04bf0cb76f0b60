"""Static snapshot: parsing the expected layout and the pure drift diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrq.cluster.snapshot import build, render_table
from ocrq.cluster.static import Layout, LayoutError, diff

LAYOUT = {
    "groups": {
        "gpu": {"queues": ["gpu"], "models": {"std": 1, "str": 2}, "min_workers": 1},
        "cpu": {"queues": ["cpu"], "models": {"rot": 1}, "min_workers": 2},
    }
}


def _model(name: str, version: int, status: str = "READY", active: bool = True,
           reason: str = "") -> dict[str, object]:
    return {"name": name, "version": version, "status": status, "active": active,
            "reason": reason, "device": "cpu", "bids": []}


def _live(gpu_models: list[dict[str, object]], gpu_queues: list[str] | None = None,
          cpu_workers: int = 2) -> object:
    queues = ["gpu"] if gpu_queues is None else gpu_queues
    nodes = [{"name": "gpu1@h", "group": "gpu", "queues": queues, "pid": 10,
              "draining": queues == []}]
    procs = [{"worker": "gpu1@h", "pid": 11, "device": "cuda:0", "models": gpu_models}]
    for i in range(cpu_workers):
        nodes.append({"name": f"cpu{i}@h", "group": "cpu", "queues": ["cpu"], "pid": 20 + i})
        procs.append({"worker": f"cpu{i}@h", "pid": 30 + i, "device": "cpu",
                      "models": [_model("rot", 1)]})
    return build(nodes, procs)


def test_no_drift_when_live_matches() -> None:
    live = _live([_model("std", 1), _model("str", 2), _model("str", 1, active=False)])
    assert diff(Layout.from_dict(LAYOUT), live) == []


def test_version_failed_missing_queue_and_worker_count_drift() -> None:
    live = _live(
        [_model("str", 1), _model("str", 2, status="FAILED", active=False,
                                  reason="checksum mismatch")],
        gpu_queues=[], cpu_workers=1,
    )
    kinds = {(d.kind, d.worker, d.detail) for d in diff(Layout.from_dict(LAYOUT), live)}
    assert ("workers", "", "expected at least 2 live worker(s), found 1") in kinds
    assert ("queue-missing", "gpu1@h", "not consuming 'gpu' (draining)") in kinds
    assert ("model-version", "gpu1@h pid 11", "str expected v2, serving v1") in kinds
    assert ("model-failed", "gpu1@h pid 11", "str v2 FAILED: checksum mismatch") in kinds
    assert ("model-missing", "gpu1@h pid 11",
            "std v1 expected, no READY version loaded") in kinds


def test_unexpected_group_and_extra_queue() -> None:
    live = build(
        [{"name": "x@h", "group": "tpu", "queues": ["tpu"]},
         {"name": "gpu1@h", "group": "gpu", "queues": ["gpu", "cpu"]}],
        [{"worker": "gpu1@h", "pid": 1, "models": [_model("std", 1), _model("str", 2)]}],
    )
    layout = Layout.from_dict({"groups": {"gpu": LAYOUT["groups"]["gpu"]}})
    drift = [(d.kind, d.worker) for d in diff(layout, live)]
    assert drift == [("queue-extra", "gpu1@h"), ("unexpected-group", "x@h")]


def test_layout_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="unknown keys"):
        Layout.from_dict({"groups": {"gpu": {"queue": ["gpu"]}}})
    with pytest.raises(LayoutError, match="'groups'"):
        Layout.from_dict(["gpu"])
    bad = tmp_path / "l.yaml"
    bad.write_text("groups: [\n")
    with pytest.raises(LayoutError, match="cannot read layout"):
        Layout.load(bad)
    good = tmp_path / "g.yaml"
    good.write_text("groups:\n  cpu:\n    queues: [cpu]\n    models: {rot: 1}\n")
    assert Layout.load(good).groups["cpu"].models == {"rot": 1}


def test_routing_table_and_status_rows() -> None:
    live = _live([_model("std", 1), _model("str", 2),
                  _model("str", 3, status="FAILED", active=False, reason="bad")])
    table = live.routing_table()
    assert table["gpu"] == {"workers": ["gpu1@h"], "models": {"std": [1], "str": [2]}}
    assert table["cpu"]["workers"] == ["cpu0@h", "cpu1@h"]
    rows = live.status_rows()
    assert {"worker": "gpu1@h pid 11", "model": "str", "version": "3",
            "status": "FAILED (bad)", "device": "cpu", "memory": "n/a"} in rows
    text = render_table(rows, ("worker", "model", "version", "status", "device", "memory"))
    assert text.splitlines()[0].startswith("| worker")
    assert "| str " in text and "2 (active)" in text
