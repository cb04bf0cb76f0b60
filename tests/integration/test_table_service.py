"""The ``table`` plan end to end through the service: the intake accepts tid
table, a real worker process loads ocrq's own ``tcd`` plug-in kind and runs the
table stage after reorder, and the job result carries ``tables`` (cells with
rows, columns and spans, and the HTML)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import encode
from tests.integration.cluster_harness import Cluster, make_cluster
from tests.unit.table_pages import bordered

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]
WORKER = "table1@test"
PLANS = """
default_bid: default
tids:
  ocr-upright:
    steps: [detect, recognize, reorder]
  table:
    steps:
      - {step: detect, hardware: gpu}
      - {step: recognize, hardware: gpu}
      - {step: reorder, hardware: cpu}
      - {step: table, hardware: cpu}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(Path(tmp_path_factory.mktemp("tablesvc")), PLANS)
    try:
        c.start_worker("cpu", WORKER, "gpu,cpu")
        c.wait_ready(WORKER)
        yield c
    finally:
        c.stop_all()


def test_the_table_plan_runs_through_the_service(cluster: Cluster) -> None:
    img, truth = bordered()
    with_table = cluster.submit(encode(img), tid="table", name="table.png")
    plain = cluster.submit(encode(img), tid="ocr-upright", name="table.png")
    docs = cluster.wait_jobs([with_table, plain], timeout_s=150)
    done = docs[with_table]
    assert done["status"] == "succeeded", done
    result = done["result"]
    (table,) = result["tables"]["tables"]
    assert (table["rows"], table["cols"]) == (5, 5) and len(table["cells"]) == len(truth)
    spans = {(c["row"], c["col"]): (c["row_span"], c["col_span"]) for c in table["cells"]}
    assert spans[(0, 0)] == (2, 1) and spans[(0, 1)] == spans[(0, 3)] == (1, 2)
    assert 'rowspan="2"' in table["html"] and table["html"].count('colspan="2"') == 2
    assert result["models"]["tcd"] == 1 and "table" in result["timings_ms"]
    assert docs[plain]["status"] == "succeeded" and "tables" not in docs[plain]["result"]
