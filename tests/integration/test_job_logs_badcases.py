"""Issue 15 end to end, the way `ocrq serve` runs it (ocrq.localcluster: the web under
waitress, a GPU worker and a CPU worker through their entry points, each logging to
its own file): one `grep <job id>` over the logs shows the job from intake through
each stage, as JSON; a low-confidence job and a failed job become bad cases that
GET /v1/badcases shows only to their own business and `ocrq badcases export` writes
in the evaluation format."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from ocrq.cli.serve import upgrade
from ocrq.evaluation.dataset import load_manifest
from ocrq.localcluster import LocalCluster, WorkerSpec
from ocrq.settings import Settings
from ocrq.storage import Database, keys
from tests.fixtures import add_noise, encode, render_page

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
BROKER_DB, STORE_DB = 10, 11  # test_serve's: integration tests run one at a time (flock)
STEPS = "[detect, recognize, {step: reorder, hardware: cpu}]"  # the CPU worker reorders
PLANS = """default_bid: default
tids:
  ocr-upright: {badcase_confidence: 1.0, steps: STEPS}
  sure: {badcase_confidence: 0, steps: STEPS}
bids:
  default: {}
  acme: {}
  globex: {}
""".replace("STEPS", STEPS)


@dataclass
class Served:
    base: str
    env: dict[str, str]
    logs: Path
    tokens: dict[str, str]

    def submit(self, bid: str, tid: str, image: bytes) -> str:
        r = requests.post(f"{self.base}/v1/jobs", timeout=30, data={"tid": tid},
                          files={"image": ("page.png", image, "image/png")},
                          headers=self.auth(bid))
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def auth(self, bid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[bid]}"}

    def wait(self, bid: str, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = requests.get(f"{self.base}/v1/jobs/{job_id}", headers=self.auth(bid),
                               timeout=10).json()
            if doc["status"] in ("succeeded", "failed"):
                return doc
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not done: {doc}")

    def grep(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every log line naming the job, per log file, each parsed as JSON."""
        out: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self.logs.glob("*.log")):
            hits = [line for line in path.read_text(errors="replace").splitlines()
                    if job_id in line]
            out[path.stem] = [json.loads(line) for line in hits]  # each one is JSON
        return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("issue15")
    (tmp / "plans.yaml").write_text(PLANS)
    (tmp / "logs").mkdir()
    env = {**os.environ, "OCRQ_DATABASE_URL": f"sqlite:///{tmp / 'ocrq.sqlite3'}",
           "OCRQ_BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
           "OCRQ_REDIS_URL": f"redis://127.0.0.1:6379/{STORE_DB}",
           "OCRQ_PLANS_FILE": str(tmp / "plans.yaml"), "OCRQ_AUTH": "keys",
           "OCRQ_WEBHOOK_SECRET": "test-secret", "OCRQ_SWEEP_INTERVAL_S": "0",
           # Workers refuse pages wider than 4000 px; the web below accepts them.
           "OCRQ_MAX_IMAGE_SIDE": "4000"}
    env.pop("OCRQ_LOG_FORMAT", None)  # the default must be JSON
    settings = Settings.from_env(env)
    for db in (BROKER_DB, STORE_DB):
        Redis(db=db).flushdb()
    upgrade(settings.database_url)
    tokens = {bid: keys.create_key(Database(settings.database_url), bid)[1]
              for bid in ("acme", "globex")}
    port = _port()
    cluster = LocalCluster(settings, log_dir=tmp / "logs", environ=env)
    try:
        cluster.start_worker(WorkerSpec("gpu", "logs-gpu@localhost", "gpu"))
        cluster.start_worker(WorkerSpec("cpu", "logs-cpu@localhost", "cpu,webhooks"))
        cluster.start_web(port=port, settings=settings.with_(max_image_side=20_000))
        cluster.wait_ready()
        yield Served(f"http://127.0.0.1:{port}", env, tmp / "logs", tokens)
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def jobs(served: Served) -> dict[str, str]:
    """low: acme's noisy page under a plan that keeps everything below 1.0; sure: a
    plan that keeps none; wide: globex's page that the workers refuse."""
    noisy = encode(add_noise(render_page(["Total 12.50", "Thank you"]), 25.0), "png")
    ids = {"low": served.submit("acme", "ocr-upright", noisy),
           "sure": served.submit("acme", "sure", noisy),
           "wide": served.submit("globex", "ocr-upright",
                                 encode(render_page(["wide"], width=4200), "png"))}
    bids = {"low": "acme", "sure": "acme", "wide": "globex"}
    docs = {k: served.wait(bids[k], v) for k, v in ids.items()}
    assert [docs[k]["status"] for k in ids] == ["succeeded", "succeeded", "failed"], docs
    assert docs["wide"]["error"]["code"] == "image_too_large"
    ids["noisy"] = noisy.hex()
    return ids


def test_one_grep_shows_the_job_across_web_and_workers(served: Served,
                                                        jobs: dict[str, str]) -> None:
    job_id = jobs["low"]
    found = served.grep(job_id)
    web, gpu, cpu = found["web"], found["logs-gpu"], found["logs-cpu"]
    intake = [x for x in web if x.get("event") == "request"]
    assert intake and intake[0]["stage"] == "intake" and intake[0]["status"] == 202
    assert (intake[0]["bid"], intake[0]["tid"], intake[0]["service"]) == (
        "acme", "ocr-upright", "web")
    assert intake[0]["duration_ms"] > 0

    def done(lines: list[dict[str, Any]], stage: str) -> dict[str, Any]:
        hits = [x for x in lines if x.get("event") == "stage_done" and x["stage"] == stage]
        assert hits, (stage, lines)
        return hits[0]

    for lines, stage, worker in ((gpu, "detect", "logs-gpu@localhost"),
                                 (gpu, "recognize", "logs-gpu@localhost"),
                                 (cpu, "reorder", "logs-cpu@localhost")):
        line = done(lines, stage)
        assert (line["job_id"], line["bid"], line["tid"], line["worker"]) == (
            job_id, "acme", "ocr-upright", worker), line
        assert line["duration_ms"] >= 0 and line["models"], line
        assert isinstance(line["time"], str) and line["level"] == "INFO"
    # Each stage task's own line: its wall time, on the worker that ran it (a page of
    # few lines is recognised inside the detect task: no recognize task of its own).
    tasks = {(x["stage"], x["state"]) for x in gpu + cpu if x.get("event") == "task_done"}
    assert {("detect", "SUCCESS"), ("reorder", "SUCCESS")} <= tasks, tasks
    assert all(x["tid"] == "ocr-upright" for x in gpu + cpu if x.get("event") == "task_done")
    # The bad case is logged on the worker that finished the job.
    assert any(x.get("event") == "badcase" for x in cpu)
    # Another job's lines carry its own id only.
    assert all(x["job_id"] == jobs["sure"] for x in served.grep(jobs["sure"])["logs-gpu"]
               if "job_id" in x)


def test_bad_cases_are_kept_and_scoped_to_their_business(served: Served,
                                                          jobs: dict[str, str]) -> None:
    acme = requests.get(f"{served.base}/v1/badcases", headers=served.auth("acme"),
                        timeout=10).json()["badcases"]
    globex = requests.get(f"{served.base}/v1/badcases", headers=served.auth("globex"),
                          timeout=10).json()["badcases"]
    assert [b["job_id"] for b in acme] == [jobs["low"]]  # "sure": its plan keeps none
    assert [b["job_id"] for b in globex] == [jobs["wide"]]
    low, wide = acme[0], globex[0]
    assert (low["reason"], low["threshold"]) == ("low_confidence", 1.0)
    assert 0 < low["confidence"] < 1.0 and low["result"]["lines"]
    assert (wide["reason"], wide["code"], wide["error"]["task"]) == (
        "failed", "image_too_large", "ocrq.detect")
    assert requests.get(f"{served.base}/v1/badcases", timeout=10).status_code == 401
    image = requests.get(f"{served.base}/v1/badcases/{low['id']}/image",
                         headers=served.auth("acme"), timeout=10)
    assert image.status_code == 200 and image.content == bytes.fromhex(jobs["noisy"])


def test_export_writes_a_manifest_the_evaluation_reads(served: Served, jobs: dict[str, str],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "labelling"
    run = subprocess.run([sys.executable, "-m", "ocrq", "badcases", "export", str(out),
                          "--bid", "acme"], cwd=ROOT, env=served.env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    (sample,) = load_manifest(out)
    assert sample.name == f"{jobs['low']}.png"
    assert sample.path.read_bytes() == bytes.fromhex(jobs["noisy"])
    row = json.loads((out / "manifest.jsonl").read_text())
    assert sample.lines and sample.load().shape[:2] == (row["height"], row["width"])
    assert (row["job_id"], row["reason"], row["draft"]) == (jobs["low"], "low_confidence", True)
    listed = subprocess.run([sys.executable, "-m", "ocrq", "badcases", "list"], cwd=ROOT,
                            env=served.env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert jobs["low"] in listed.stdout and jobs["wide"] in listed.stdout
