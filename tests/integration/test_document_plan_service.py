"""The ``document`` plan through the service (issue 13): a real worker process
reads the page, classifies it, and the classify step's ``then`` appends the
plug-in stages of the plan for its class as further ``ocrq.stage`` tasks, routed
when the branch is taken. A generated ID card gets the ``idcard`` stage (its
``card`` field, corners within 2% of the card's diagonal); a generated receipt
gets nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ocrq.evaluation.idcard_eval import corner_error
from ocrq.suite import idcard_synth
from tests.fixtures import encode, render_page
from tests.integration.cluster_harness import Cluster, make_cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(400)]
WORKER = "docplan1@test"
PLANS = """
default_bid: default
tids:
  ocr:
    steps: [detect, recognize, reorder]
  idcard:
    steps: [detect, recognize, reorder, {step: idcard, hardware: cpu}]
  document:
    steps:
      - {step: detect, hardware: gpu}
      - {step: recognize, hardware: gpu}
      - {step: reorder, hardware: cpu}
      - {step: classify, hardware: cpu, options: {then: {id_card: idcard, "*": ocr}}}
"""
RECEIPT = ["CORNER MARKET", "12 Main Street", "Tel 555-123-4567", "25/11/2026 14:32",
           "Milk 2L        3.49", "Bread          2.99", "Eggs x12       4.25",
           "SUBTOTAL      10.73", "TAX            0.86", "TOTAL         11.59",
           "CASH          20.00", "CHANGE         8.41", "THANK YOU FOR SHOPPING"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(tmp_path_factory.mktemp("docplan"), PLANS)
    try:
        c.start_worker("cpu", WORKER, "gpu,cpu")
        c.wait_ready(WORKER)
        yield c
    finally:
        c.stop_all()


def test_the_document_plan_branches_by_class_through_the_service(cluster: Cluster) -> None:
    sample = idcard_synth.generate(np.random.default_rng(7))
    card_job = cluster.submit(encode(sample.image), tid="document", name="card.png")
    receipt = render_page(RECEIPT, font="DejaVuSansMono", size=24, margin=30)
    receipt_job = cluster.submit(encode(receipt), tid="document", name="receipt.png")
    docs = cluster.wait_jobs([card_job, receipt_job], timeout_s=300)

    done = docs[card_job]
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["document_class"]["label"] == "id_card"
    assert result["branch"] == [{"after": "classify", "label": "id_card", "tid": "idcard",
                                 "stages": ["idcard"]}]
    card = result["card"]
    assert card["found"] and corner_error(np.asarray(card["quad"]), sample.corners) <= 0.02
    assert card["fields"]["mrz"] is not None and card["lines"]
    assert result["models"]["idd"] == 1 and result["models"]["cls"] == 1
    assert {"classify", "idcard"} <= set(result["timings_ms"])

    other = docs[receipt_job]
    assert other["status"] == "succeeded", other
    assert other["result"]["document_class"]["label"] == "receipt"
    assert other["result"]["branch"][0]["tid"] == "ocr" and "card" not in other["result"]
