"""Desired versions in the database (SQLite and MariaDB), broadcast over real Redis,
applied by the worker-side agent in the background, watched through heartbeats."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from ocrq.cluster.agent import ProcessAgent
from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.rollout import wait
from ocrq.errors import ModelNotFound
from ocrq.models.control import ModelControl, NothingToRollBack
from ocrq.models.registry import ModelRegistry
from ocrq.models.repository import ModelRepository
from ocrq.models.states import Status
from ocrq.settings import Settings
from ocrq.storage import Database
from tests.integration.conftest import MARIADB_URL

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/11"


def migrate(url: str) -> None:
    from ocrq.cli.serve import upgrade  # what `ocrq db upgrade` runs

    upgrade(url)


@pytest.fixture(params=["sqlite", "mariadb"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ocrq.db'}"
    else:
        import sqlalchemy as sa

        name = f"ocrq_t4_{os.getpid()}"
        admin = sa.create_engine(f"{MARIADB_URL}/")
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        url = f"{MARIADB_URL}/{name}"
    migrate(url)
    database = Database(url)
    yield database
    database.engine.dispose()
    if request.param == "mariadb":
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(scope="module")
def pristine_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    repo = ModelRepository(root)
    repo.ensure_defaults()
    repo.add_version("str", repo.manifest("str", 1).weights_path)  # v2 = copy of v1
    return root


@pytest.fixture
def repo(pristine_repo: Path, tmp_path: Path) -> ModelRepository:
    shutil.copytree(pristine_repo, tmp_path / "models")
    return ModelRepository(tmp_path / "models")


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_activate_rollback_canary_and_history(db: Database, redis: Redis,
                                              repo: ModelRepository) -> None:
    control = ModelControl(db, redis, repo)
    assert control.desired().versions == {}
    with pytest.raises(NothingToRollBack):
        control.rollback("str")
    with pytest.raises(ModelNotFound, match="versions present: \\[1, 2\\]"):
        control.activate("str", 7)
    change = control.activate("str", 2, actor="test")
    assert (change.version, change.previous_version) == (2, 2)  # never activated: latest served
    control.activate("str", 1)
    control.activate("str", 2, bid="acme")
    desired = control.desired()
    assert desired.versions == {"str": 1} and desired.bids == {"acme": {"str": 2}}
    assert control.rollback("str").version == 2
    control.rollback("str", bid="acme")
    assert control.desired().bids == {}
    with pytest.raises(NothingToRollBack):
        control.rollback("str", bid="acme")
    rows = control.history("str")
    assert [(r["bid"], r["version"]) for r in rows] == [
        ("acme", None), (None, 2), ("acme", 2), (None, 1), (None, 2)]


def _agent(repo: ModelRepository, redis: Redis, control: ModelControl,
           name: str = "w1@test") -> ProcessAgent:
    settings = Settings(model_root=repo.root, threads=1, heartbeat_ttl_s=6,
                        model_reconcile_s=3600)
    registry = ModelRegistry(repo, settings)
    registry.preload(["str"])
    agent = ProcessAgent(settings, registry, name, Redis.from_url(REDIS_URL), control.desired)
    agent.boot()
    agent.start()
    return agent


def test_worker_agent_follows_broadcasts_and_reports(db: Database, redis: Redis,
                                                     repo: ModelRepository) -> None:
    control = ModelControl(db, redis, repo)
    control.activate("str", 1)
    agent = _agent(repo, redis, control)
    try:
        assert agent.registry.get("str").version == 1
        _wait_subscribed(redis)
        control.activate("str", 2)
        state = wait(redis, "str", 2, timeout_s=20)
        assert state.serving == [f"w1@test pid {os.getpid()}"] and state.done
        assert agent.registry.get("str").version == 2
        # A corrupt v3: FAILED with the reason in the heartbeat; v2 keeps serving.
        bad = repo.add_version("str", repo.manifest("str", 1).weights_path)
        bad.weights_path.write_bytes(b"corrupt")
        control.activate("str", bad.version)
        state = wait(redis, "str", bad.version, timeout_s=20)
        assert "checksum mismatch" in state.failed[f"w1@test pid {os.getpid()}"]
        assert agent.registry.get("str").version == 2
        # Canary for one bid only.
        control.activate("str", 1, bid="acme")
        assert wait(redis, "str", 1, bid="acme", timeout_s=20).serving
        with agent.registry.for_bid("acme"):
            assert agent.registry.get("str").version == 1
        assert agent.registry.get("str").version == 2
        rows = read_snapshot(redis).status_rows()
        assert any(r["model"] == "str" and r["status"].startswith("FAILED (") for r in rows)
        assert all(r["memory"].startswith("rss ") for r in rows)
    finally:
        agent.stop()
    assert read_snapshot(redis).workers == ()  # no node record; process record removed
    assert redis.keys("ocrq:hb:proc:*") == []


def test_worker_started_later_reads_desired_state_at_boot(db: Database, redis: Redis,
                                                           repo: ModelRepository) -> None:
    control = ModelControl(db, redis, repo)
    control.activate("str", 2)
    control.activate("str", 1)  # latest on disk is 2, but 1 is desired
    agent = _agent(repo, redis, control, name="late@test")
    try:
        assert agent.registry.get("str").version == 1
        states = {(s.version, s.status) for s in agent.registry.states()}
        assert states == {(1, Status.READY)}  # booted straight onto v1, nothing else kept
    finally:
        agent.stop()


def _wait_subscribed(redis: Redis, timeout_s: float = 10.0) -> None:
    """The agent subscribes in a background thread; publish only once it listens."""
    from ocrq.models.control import channel

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dict(redis.pubsub_numsub(channel(redis))).get(channel(redis).encode(), 0):
            return
        time.sleep(0.05)
    raise AssertionError("agent never subscribed")
