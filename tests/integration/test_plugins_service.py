"""A plug-in installed with pip runs end to end through the service: the intake
validates a plan naming its stage, a real worker process loads its model kind
and runs the stage after reorder, and the result carries the stage's field."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.integration.cluster_harness import Cluster, line_image, make_cluster
from tests.plugin_env import pip_install, plugin_on_path

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "plug1@test"
PLANS = """
default_bid: default
tids:
  ocr-upright:
    steps: [detect, recognize, reorder]
  ink:
    steps:
      - {step: detect, hardware: gpu}
      - {step: recognize, hardware: gpu}
      - {step: reorder, hardware: cpu}
      - {step: inkstats, options: {label: service}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    plugin = pip_install(tmp_path_factory.mktemp("plugin"))
    old = os.environ.get("PYTHONPATH")
    # The worker processes find the plug-in the way an installed package is found.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), old) if p)
    try:
        with plugin_on_path(plugin):
            c = make_cluster(tmp_path_factory.mktemp("plugsvc"), PLANS)
            try:
                c.start_worker("cpu", WORKER, "gpu,cpu")
                c.wait_ready(WORKER)
                yield c
            finally:
                c.stop_all()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_a_plan_with_a_plugin_stage_runs_through_the_service(cluster: Cluster) -> None:
    with_stage = cluster.submit(line_image("Invoice 4711"), tid="ink")
    plain = cluster.submit(line_image("Invoice 4711"), tid="ocr-upright")
    docs = cluster.wait_jobs([with_stage, plain], timeout_s=120)
    done = docs[with_stage]
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert "4711" in result["lines"][0]["text"]
    assert result["ink"]["lines"] == len(result["lines"]) and result["ink"]["label"] == "service"
    assert 0 < result["ink"]["dark_share"] < 0.5
    assert result["models"]["ink"] == 1 and "inkstats" in result["timings_ms"]
    assert docs[plain]["status"] == "succeeded" and "ink" not in docs[plain]["result"]
    # The worker's registry reports the plug-in's model kind like any other (next beat).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ("ink", "READY") not in _states(cluster):
        time.sleep(0.2)
    assert ("ink", "READY") in _states(cluster)


def _states(cluster: Cluster) -> set[tuple[str, str]]:
    return {(m["name"], m["status"]) for w in cluster.snapshot().workers
            for p in w.processes for m in p.models}
