"""A small real cluster for the hot-swap / routing / drain tests.

Real Redis (broker and cache on their own db numbers), a migrated SQLite file,
a model repository in a temp folder, and Celery worker processes started
through :mod:`ocrq.localcluster` (the real entry points, ``python -m
workers.gpu`` / ``workers.cpu``, as ``ocrq serve`` starts them). Jobs are
submitted through :func:`ocrq.pipeline.jobs.submit`, the same call the HTTP
intake makes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from redis import Redis

from ocrq.cli.serve import upgrade
from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot
from ocrq.localcluster import LocalCluster, WorkerSpec
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.jobs import submit
from ocrq.pipeline.state import Services
from ocrq.pipeline.work import document
from ocrq.settings import Settings
from tests.fixtures import encode, render_page

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB, CACHE_DB = 12, 13
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Cluster:
    tmp: Path
    env: dict[str, str]
    settings: Settings
    _services: Services | None = None
    _app: Celery | None = None
    _local: LocalCluster | None = None

    # --- handles (created lazily, in the test process) -------------------------------
    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.settings)
        return self._services

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = create_celery_app(self.settings)
        return self._app

    @property
    def redis(self) -> Redis:
        return self.services.redis

    @property
    def repo(self) -> ModelRepository:
        return ModelRepository(self.settings.model_root)

    def control(self) -> ModelControl:
        return ModelControl(self.services.db, self.redis, self.repo)

    def snapshot(self) -> Snapshot:
        return read_snapshot(self.redis)

    # --- workers ---------------------------------------------------------------------
    @property
    def local(self) -> LocalCluster:
        if self._local is None:
            self._local = LocalCluster(self.settings, log_dir=self.tmp, environ=self.env)
        return self._local

    @property
    def workers(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: p.popen for name, p in self.local.processes.items()}

    def start_worker(self, kind: str, name: str, queues: str, concurrency: int = 1) -> None:
        # Settings read from env now: tests add OCRQ_* variables after make_cluster.
        self.local.start_worker(WorkerSpec(kind, name, queues, concurrency),
                                Settings.from_env(self.env))

    def wait_ready(self, name: str, timeout_s: float = 90.0) -> None:
        """Until the node heartbeats and each of its processes reports its models READY."""
        self.local.wait_ready([name], timeout_s)

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.local.kill(name, sig)

    def stop_all(self) -> None:
        self.local.stop(grace_s=20)

    def log_tail(self, name: str, n: int = 3000) -> str:
        path = self.local.log_path(name)
        return path.read_text(errors="replace")[-n:] if path and path.exists() else "(no log)"

    def task_starts(self) -> dict[str, int]:
        """How often each task has started (the pipeline's per-task delivery counters)."""
        return {k.decode(): int(self.redis.get(k) or 0)
                for k in self.redis.scan_iter("ocrq:delivery:*")}

    def pids(self) -> dict[str, list[int]]:
        """Pids of every live worker node and its processes, from heartbeats."""
        return {w.name: [w.pid] + [p.pid for p in w.processes] for w in self.snapshot().workers}

    # --- jobs --------------------------------------------------------------------------
    def submit(self, data: bytes, *, bid: str | None = None, tid: str = "ocr-upright",
               name: str = "line.png") -> str:
        doc, _ = submit(self.services, self.app, data, name, bid=bid, tid=tid)
        return str(doc["id"])

    def document(self, job_id: str) -> dict[str, Any]:
        doc = document(self.services, job_id)
        assert doc is not None, job_id
        return doc

    def wait_jobs(self, ids: list[str], timeout_s: float = 240.0) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for job_id in ids:
                if job_id not in done:
                    doc = self.document(job_id)
                    if doc["status"] in TERMINAL:
                        done[job_id] = doc
            if len(done) == len(ids):
                return done
            time.sleep(0.2)
        missing = [i for i in ids if i not in done]
        raise AssertionError(f"{len(missing)} of {len(ids)} jobs not finished: "
                             f"{[self.document(i)['status'] for i in missing[:5]]}")


@contextlib.contextmanager
def one_worker_cluster(tmp: Path, kind: str, name: str, queues: str,
                       **env: str) -> Iterator[Cluster]:
    """One worker of ``kind`` (cpu | gpu) named ``name`` on ``queues``, ready;
    ``env``: extra OCRQ_* settings for the workers."""
    c = make_cluster(tmp)
    c.env.update(env)
    try:
        c.start_worker(kind, name, queues)
        c.wait_ready(name)
        yield c
    finally:
        c.stop_all()


@contextlib.contextmanager
def gpu_and_cpu_cluster(tmp: Path, plans_yaml: str | None = None) -> Iterator[Cluster]:
    """One GPU-entry worker (gpu1@test) and one CPU worker (cpu1@test), ready."""
    c = make_cluster(tmp, plans_yaml)
    try:
        c.start_worker("gpu", "gpu1@test", "gpu")
        c.start_worker("cpu", "cpu1@test", "cpu")
        c.wait_ready("gpu1@test")
        c.wait_ready("cpu1@test")
        yield c
    finally:
        c.stop_all()


def cluster_env(tmp: Path, broker_db: int = BROKER_DB, cache_db: int = CACHE_DB,
                **extra: str) -> dict[str, str]:
    """Worker environment: the given Redis dbs, a SQLite file and models in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRQ_")}
    env.update({
        "OCRQ_BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
        "OCRQ_REDIS_URL": f"redis://127.0.0.1:6379/{cache_db}",
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp / 'ocrq.db'}",
        "OCRQ_MODEL_ROOT": str(tmp / "models"),
        "OCRQ_THREADS": "1",
        "OCRQ_HEARTBEAT_TTL_S": "3",  # a killed worker leaves the routing table within 3 s
        # Workers on the webhooks queue refuse the default signing key.
        "OCRQ_WEBHOOK_SECRET": "cluster-test-secret",
        **extra,
    })
    return env


def make_cluster(tmp: Path, plans_yaml: str | None = None) -> Cluster:
    """Settings, migrated database and model repository (str v2 = a copy of v1)."""
    env = cluster_env(tmp)
    if plans_yaml is not None:
        (tmp / "plans.yaml").write_text(plans_yaml)
        env["OCRQ_PLANS_FILE"] = str(tmp / "plans.yaml")
    for db in (BROKER_DB, CACHE_DB):
        Redis(db=db).flushdb()
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    repo = ModelRepository(settings.model_root)
    repo.ensure_defaults()
    repo.add_version("str", repo.manifest("str", 1).weights_path)
    cluster = Cluster(tmp, env, settings)
    cluster.control().activate("str", 1, actor="test")  # v2 exists on disk but is not active
    return cluster


def migrate(url: str) -> None:
    upgrade(url)  # what `ocrq db upgrade` runs


def line_image(text: str = "Invoice 4711") -> bytes:
    return encode(render_page([text], size=24, margin=12))
