"""``ocrq serve`` (web + workers on one machine), ``ocrq db upgrade``, ``ocrq purge``."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import click
import platformdirs
from alembic import command
from alembic.config import Config

from ocrq.localcluster import LocalCluster, LocalProcess, WorkerSpec
from ocrq.settings import Settings
from ocrq.storage import Database
from ocrq.storage.jobs import purge as purge_jobs
from ocrq.webhooks import DEFAULT_SECRET

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
SERVERS = ("granian", "gunicorn", "waitress")


def granian_argv(host: str, port: int, processes: int, threads: int) -> list[str]:
    """The intake under granian: ``processes`` x ``threads`` running the Flask app, the
    HTTP side in Rust (about a third of gunicorn gthread's CPU per request)."""
    return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host,
            "--port", str(port), "--workers", str(processes), "--blocking-threads",
            str(threads), "--no-access-log", "--factory", "web:create_app"]


def start_web(cluster: LocalCluster, host: str, port: int, *, server: str = "granian",
              processes: int = 1, threads: int = 2) -> LocalProcess:
    """The web intake on ``cluster``: granian here, gunicorn and waitress by the cluster."""
    if server == "granian":
        return cluster.start_process("web", granian_argv(host, port, processes, threads),
                                     url=f"http://{host}:{port}")
    return cluster.start_web(host, port, threads, processes=processes, server=server)


def upgrade(database_url: str, revision: str = "head") -> None:
    ini = MIGRATIONS / "alembic.ini"
    if not ini.exists():
        raise click.ClickException(f"migrations not found at {MIGRATIONS} (run from a checkout)")
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config(str(ini))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, revision)


@click.group("db")
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to OCRQ_DATABASE_URL."""
    upgrade(Settings.from_env().database_url, revision)
    click.echo(f"database at {revision}")


@click.command("purge")
@click.option("--days", type=int, default=None,
              help="retention (default OCRQ_RESULT_RETENTION_DAYS)")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="jobs per transaction (default OCRQ_PURGE_BATCH)")
def purge(days: int | None, batch: int | None) -> None:
    """Delete finished jobs, results and deliveries older than the retention.

    In batches, one transaction each (workers also purge on OCRQ_PURGE_INTERVAL_S).
    """
    s = Settings.from_env()
    n = purge_jobs(Database(s.database_url), s.result_retention_days if days is None else days,
                   batch=s.purge_batch if batch is None else batch)
    click.echo(f"purged {n} jobs")


def local_secret(s: Settings, data_dir: Path | None = None) -> Settings:
    """Without a webhook secret of one's own, a random one for this machine, kept in
    the data directory (the same one next time) and named on the terminal."""
    if s.webhook_secret != DEFAULT_SECRET or s.allow_default_secret:
        return s
    path = (data_dir or Path(platformdirs.user_data_dir("ocrq", appauthor=False))) / \
        "webhook-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # exclusive: two serves agree on one
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    secret = path.read_text().strip()
    if not secret:
        raise click.ClickException(f"{path} is empty: delete it or set OCRQ_WEBHOOK_SECRET")
    click.echo(f"webhooks are signed with the generated secret in {path} "
               "(set OCRQ_WEBHOOK_SECRET to use your own)")
    return s.with_(webhook_secret=secret)


@click.command("serve")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", type=int, default=os.cpu_count() or 1, show_default=True,
              help="worker processes (each loads the models once)")
@click.option("--server", type=click.Choice(SERVERS), default="granian", show_default=True,
              help="the web intake's WSGI server")
@click.option("--web-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="web processes (granian, gunicorn; waitress runs only one)")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="threads per web process (requests one process serves at once; "
                   "more cost CPU in switching: README)")
@click.option("--migrate/--no-migrate", default=True, show_default=True)
def serve(port: int, host: str, workers: int, server: str, web_processes: int, threads: int,
          migrate: bool) -> None:
    """Run the web intake and the workers here until Ctrl-C.

    One web process uses at most about one core; the README's deployment section
    says what one holds (submits/s, polls/s) and how to size processes x threads."""
    if server == "waitress" and web_processes > 1:
        raise click.UsageError("waitress runs one process: --web-processes 1, or another "
                               "--server")
    s = local_secret(Settings.from_env())
    if migrate:
        upgrade(s.database_url)
    # Without a GPU one worker serves every queue (the GPU worker falls back to CPU anyway).
    queues = ",".join([s.queue_gpu, s.queue_cpu, s.queue_webhooks])
    stop = {"sig": 0}

    def _stop(signum: int, _frame: object) -> None:
        stop["sig"] = signum

    # Before the children start: a Ctrl-C while they load still stops them in order.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    cluster = LocalCluster(s)
    code = 0
    try:
        cluster.start_worker(WorkerSpec("cpu", f"serve-{os.getpid()}", queues, workers))
        start_web(cluster, host, port, server=server, processes=web_processes, threads=threads)
        click.echo(f"ocrq serving on http://{host}:{port} ({server}, {web_processes} x "
                   f"{threads} web) with {workers} worker processes")
        while not stop["sig"]:
            dead = cluster.exited()
            if dead:
                click.echo(f"stopping: {dead} exited", err=True)
                code = 1
                break
            time.sleep(0.2)
    finally:
        cluster.stop()  # warm shutdown: running tasks finish, SIGKILL after 30 s
    sys.exit(code)
