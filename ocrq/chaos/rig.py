"""A whole deployment on private servers, for fault runs: the fault suite
(tests/faults/) and the soak bench (bench/soak.py) build the same one.

Processes, all through one :class:`~ocrq.localcluster.LocalCluster`: a private
Redis with AOF (broker db 0, store db 1), a private MariaDB (or a database URL
given), the web intake under waitress, a GPU worker (``workers.gpu``; on CPU
here) on the gpu queue and a prefork CPU worker on cpu and webhooks. A
:class:`~ocrq.chaos.receiver.Receiver` in this process takes the webhooks.
Jobs go in over HTTP, as a client sends them. :meth:`Rig.audit` checks the
end state from the database, Redis and the receiver's log.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from ocrq.chaos.receiver import Receiver
from ocrq.chaos.servers import MariaDBServer, RedisServer, free_port
from ocrq.document import PageResult
from ocrq.localcluster import LocalCluster, WorkerSpec
from ocrq.models.repository import ModelRepository
from ocrq.pipeline.state import Services
from ocrq.settings import Settings
from ocrq.storage import TERMINAL, Job, Result

SECRET = "chaos-rig-secret"
GPU, CPU = "chaos-gpu@localhost", "chaos-cpu@localhost"
# Fast retries and a short sweep: faults show within seconds, not the production minutes.
BASE_SETTINGS: dict[str, Any] = {
    "webhook_secret": SECRET, "allow_private_urls": True, "webhook_backoff_s": 0.5,
    "webhook_backoff_max_s": 2.0, "webhook_max_attempts": 8, "webhook_timeout_s": 2.0,
    "threads": 1, "heartbeat_ttl_s": 3, "sweep_interval_s": 2, "redrive_after_s": 5,
    "job_deadline_s": 240, "visibility_timeout_s": 30, "max_deliveries": 3,
    "webhook_redrive_after_s": 3, "webhook_rounds": 3,
}


@dataclass
class Audit:
    """What :meth:`Rig.audit` found; ``problems`` empty means the run lost nothing."""

    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # error code -> jobs
    problems: list[str] = field(default_factory=list)
    webhooks: int = 0  # POSTs received
    duplicate_webhooks: int = 0  # POSTs of an event id received before


class Rig:
    def __init__(self, tmp: Path, *, model_root: Path | None = None,
                 database_url: str | None = None, gpu_threads: int = 2,
                 cpu_concurrency: int = 2, gpu_kind: str = "gpu", **overrides: Any) -> None:
        self.tmp = tmp
        self.cluster = LocalCluster(Settings(), log_dir=tmp)
        self.redis = RedisServer(self.cluster, tmp / "redis")
        self.mariadb = MariaDBServer(self.cluster, tmp / "mariadb") if database_url is None \
            else None
        self._database_url = database_url
        self.model_root = model_root or tmp / "models"
        self.gpu_threads, self.cpu_concurrency = gpu_threads, cpu_concurrency
        self.gpu_kind = gpu_kind  # "cpu": a prefork worker takes the gpu queue instead
        self.overrides = {**BASE_SETTINGS, **overrides}
        self.receiver = Receiver(SECRET)
        self.web_port = free_port()
        self.settings = Settings()
        self._services: Services | None = None

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> Rig:
        self.redis.start()
        if self.mariadb is not None:
            self.mariadb.start()
            self._database_url = self.mariadb.create_database("ocrq")
        assert self._database_url is not None
        # As an operator would: `ocrq db upgrade` (this package sits beside the CLI).
        subprocess.run([sys.executable, "-m", "ocrq", "db", "upgrade"], check=True,
                       env={**os.environ, "OCRQ_DATABASE_URL": self._database_url},
                       capture_output=True, timeout=300)
        ModelRepository(self.model_root).ensure_defaults()
        self.settings = Settings(broker_url=self.redis.url(0), redis_url=self.redis.url(1),
                                 database_url=self._database_url, model_root=self.model_root,
                                 **self.overrides)
        self.cluster.settings = self.settings
        self.receiver.up()
        self.start_workers()
        self.cluster.start_web(port=self.web_port, threads=8)
        self.cluster.wait_ready()
        return self

    def start_workers(self, names: tuple[str, ...] = (GPU, CPU)) -> None:
        for spec in self.specs():
            if spec.node in names:
                self.cluster.start_worker(spec)

    def specs(self) -> list[WorkerSpec]:
        return [WorkerSpec(self.gpu_kind, GPU, self.settings.queue_gpu, self.gpu_threads),
                WorkerSpec("cpu", CPU, f"{self.settings.queue_cpu},"
                                       f"{self.settings.queue_webhooks}",
                           self.cpu_concurrency)]

    def stop(self) -> None:
        self.receiver.down()
        self.cluster.stop(grace_s=10)

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.settings)
        return self._services

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    # --- jobs ------------------------------------------------------------------------
    def submit(self, data: bytes, name: str = "page.png", *, tid: str | None = None,
               callback: bool = True, attempts: int = 30) -> str:
        """POST the image (retried on 503 after its Retry-After, as a client should,
        with one Idempotency-Key); returns the job id."""
        form = {"callback_url": self.receiver.url} if callback else {}
        if tid:
            form["tid"] = tid
        key = secrets.token_hex(8)
        for _ in range(attempts):
            try:
                r = requests.post(f"{self.base}/v1/jobs", files={"image": (name, data)},
                                  data=form, headers={"Idempotency-Key": key}, timeout=30)
            except requests.ConnectionError:
                time.sleep(0.5)
                continue
            if r.status_code in (200, 202):
                return str(r.json()["id"])
            if r.status_code != 503:
                raise AssertionError(f"submit: HTTP {r.status_code}: {r.text[:300]}")
            time.sleep(float(r.headers.get("Retry-After") or 1))
        raise AssertionError(f"submit: no job after {attempts} attempts")

    def api(self, job_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.base}/v1/jobs/{job_id}", timeout=30)
        r.raise_for_status()
        return dict(r.json())

    def db_jobs(self, ids: list[str]) -> dict[str, Job]:
        with self.services.db.session() as s:
            return {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}

    def wait_terminal(self, ids: list[str], timeout_s: float) -> dict[str, Job]:
        """Until every job is terminal in the database (the system of record)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                rows = self.db_jobs(ids)
            except Exception:  # the database restarting: ask again
                rows = {}
            if rows and len(rows) == len(ids) and all(
                    j.status in TERMINAL for j in rows.values()):
                return rows
            if time.monotonic() > deadline:
                left = [i for i in ids if i not in rows or rows[i].status not in TERMINAL]
                raise AssertionError(f"{len(left)} of {len(ids)} jobs not terminal after "
                                     f"{timeout_s:.0f} s: {left[:5]}")
            time.sleep(0.5)

    def wait_webhooks(self, ids: list[str], timeout_s: float) -> None:
        """Until each job has its final webhook (or the timeout: audit then says which)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.receiver.by_job()
            if all(i in got for i in ids):
                return
            time.sleep(0.5)

    # --- the end state ---------------------------------------------------------------
    def audit(self, ids: list[str], expected: Mapping[str, str],
              failed_ok: Mapping[str, str] | None = None) -> Audit:
        """Check every job in ``ids``: terminal; succeeded with ``expected[id]`` as its
        text, or failed with the code ``failed_ok[id]``; one result row per success;
        API status == DB status; its final webhook received with its event id."""
        out, failed_ok = Audit(), failed_ok or {}
        rows = self.db_jobs(ids)
        got = self.receiver.by_job()
        with self.services.db.session() as s:
            results = dict(s.execute(select(Result.job_id, func.count()).where(
                Result.job_id.in_(ids)).group_by(Result.job_id)).all())
        for job_id in ids:
            job = rows.get(job_id)
            if job is None:
                out.problems.append(f"{job_id}: no row")
                continue
            out.statuses[job.status] = out.statuses.get(job.status, 0) + 1
            code = (job.error or {}).get("code")
            if code:
                out.errors[code] = out.errors.get(code, 0) + 1
            out.problems += _check_job(job, results.get(job_id, 0), expected.get(job_id),
                                       failed_ok.get(job_id), self.api(job_id), got.get(job_id))
        for calls in got.values():
            out.webhooks += len(calls)
            out.duplicate_webhooks += len(calls) - len({c.event_id for c in calls})
        out.problems += self.leftovers()
        return out

    def leftovers(self) -> list[str]:
        """Keys that would grow with every job if nothing removed them."""
        store, problems = self.redis.client(1), []
        images = sum(1 for _ in store.scan_iter("ocrq:img:*"))
        if images:
            problems.append(f"{images} images of finished jobs left")
        # A start counter may rightly remain a while (a task killed mid-way whose
        # message comes back after the visibility timeout): it must expire, though.
        forever = [k for k in store.scan_iter("ocrq:delivery:*") if store.ttl(k) == -1]
        if forever:
            problems.append(f"{len(forever)} task start counters that never expire")
        broker = self.redis.client(0)
        s = self.settings
        queued = sum(int(broker.llen(q)) for q in (s.queue_gpu, s.queue_cpu, s.queue_webhooks))
        if queued:
            problems.append(f"{queued} messages left on the queues")
        return problems


def _check_job(job: Job, results: int, text: str | None, code: str | None,
               api: dict[str, Any], calls: list[Any] | None) -> list[str]:
    p = []
    if job.status not in TERMINAL:
        p.append(f"{job.id}: still {job.status}")
    if api["status"] != job.status:
        p.append(f"{job.id}: API says {api['status']}, the database {job.status}")
    if job.status == "succeeded":
        if code is not None:
            p.append(f"{job.id}: succeeded, expected to fail with {code}")
        if results != 1:
            p.append(f"{job.id}: {results} result rows")
        elif text is not None and PageResult.from_dict(api["result"]).text() != text:
            p.append(f"{job.id}: text differs from the in-process engine's")
    else:
        if results:
            p.append(f"{job.id}: {job.status} with {results} result rows")
        wanted = code or "(success)"
        got = (job.error or {}).get("code")
        if got != code:
            p.append(f"{job.id}: {job.status} ({got}: {(job.error or {}).get('message')}), "
                     f"expected {wanted}")
    event = f"{job.id}.{job.status}"
    if job.callback_url and not any(c.event_id == event and c.verified for c in calls or []):
        p.append(f"{job.id}: final webhook {event} not received")
    return p
