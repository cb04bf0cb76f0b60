"""Private Redis and MariaDB servers a fault run may stop, restart and flush.

The shared servers on 6379 and 3306 belong to everyone on the machine; a fault
run starts its own on free ports, each in its own directory, through the
:class:`~ocrq.localcluster.LocalCluster` that runs the rest of the deployment
(``service=True``: stopped after the workers and the web process).

Redis runs as compose runs it (``--appendonly yes``), so a restart keeps the
queues and the job cache the way production's would. A stop is SIGTERM, as
``docker restart`` does: Redis writes its AOF and MariaDB shuts down cleanly.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pymysql
from redis import Redis

from ocrq.localcluster import LocalCluster, LocalClusterError, free_port, wait_redis

START_TIMEOUT_S = 60.0


class RedisServer:
    """``redis-server`` on a free port with AOF on, in ``workdir``."""

    def __init__(self, cluster: LocalCluster, workdir: Path, name: str = "redis") -> None:
        self.cluster, self.workdir, self.name = cluster, workdir, name
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> Redis:
        return Redis.from_url(self.url(db), socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> None:
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.workdir), "--appendonly", "yes",
                "--save", "", "--protected-mode", "no"]
        self.cluster.start_process(self.name, argv, service=True,
                                   log=self.workdir / "redis.log")
        wait_redis(self.url(), START_TIMEOUT_S)

    def stop(self) -> None:
        self.cluster.stop([self.name], grace_s=20)

    def restart(self, down_s: float) -> float:
        """Stop (AOF written), stay down ``down_s``, start; returns the seconds it was down."""
        t0 = time.monotonic()
        self.stop()
        time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
        self.start()
        return time.monotonic() - t0

    def flush(self) -> None:
        """Every key of every database gone: queues, unacked messages, cache, images."""
        self.client().flushall()


class MariaDBServer:
    """``mariadbd`` on a free port with its own data directory (made by
    ``mariadb-install-db``); root without a password on 127.0.0.1."""

    def __init__(self, cluster: LocalCluster, workdir: Path, name: str = "mariadb") -> None:
        self.cluster, self.workdir, self.name = cluster, workdir, name
        self.port = free_port()
        self.datadir = workdir / "data"

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("mariadbd") or shutil.which("mysqld")) and bool(
            shutil.which("mariadb-install-db"))

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def install(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # --user=root: the server runs as whoever runs the suite (root in CI containers).
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        "--user=root"], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if not self.datadir.exists():
            self.install()
        server = shutil.which("mariadbd") or shutil.which("mysqld") or "mariadbd"
        argv = [server, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.workdir / 'mysqld.sock'}",
                f"--pid-file={self.workdir / 'mysqld.pid'}", "--user=root",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
                "--skip-name-resolve", "--max-connections=400"]
        self.cluster.start_process(self.name, argv, service=True,
                                   log=self.workdir / "mariadb.log")
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                                connect_timeout=1).close()
                return
            except pymysql.MySQLError as exc:
                if time.monotonic() > deadline or not self.cluster.processes[self.name].running():
                    tail = self.cluster.processes[self.name].log_tail()
                    raise LocalClusterError(f"private MariaDB not up: {exc}: {tail}") from exc
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4")
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        self.cluster.stop([self.name], grace_s=60)

    def restart(self, down_s: float) -> float:
        t0 = time.monotonic()
        self.stop()
        time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
        self.start()
        return time.monotonic() - t0
