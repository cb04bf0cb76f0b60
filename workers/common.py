"""Shared boot code of the worker entry points."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from ocrq.observability import logs
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.state import configure
from ocrq.settings import Settings
from ocrq.webhooks import secret_problem, warn_if_default_secret
from workers import lifecycle

log = logging.getLogger(__name__)
THREADS_POOL = "workers.pool:ThreadPool"


def parser(kind: str, queues: str, concurrency: int, pool: str = "prefork pool",
           concurrency_help: str = "worker processes (each loads the models once)",
           ) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m workers.{kind}",
                                description=f"ocrq {kind} worker (Celery, {pool})")
    p.add_argument("-Q", "--queues", default=queues, help="comma-separated queue names")
    p.add_argument("-c", "--concurrency", type=int, default=concurrency,
                   help=concurrency_help)
    p.add_argument("-n", "--name", default="", help="node name (default <kind>@<host>)")
    p.add_argument("-l", "--loglevel", default="INFO")
    p.add_argument("--no-preload", action="store_true",
                   help="do not load models at process start (webhook-only workers)")
    return p


def split_threads(settings: Settings, processes: int) -> Settings:
    """Give each of ``processes`` worker processes its share of the cores.

    OCRQ_THREADS=0 means "all cores" to one engine; N prefork children each
    taking all cores would oversubscribe the machine N times (and each would
    keep extra model copies for them, see runtimes/sharded.py). An explicit
    OCRQ_THREADS is kept as given.
    """
    if settings.threads > 0:
        return settings
    return settings.with_(threads=max(1, (os.cpu_count() or 1) // max(1, processes)))


def run_worker(kind: str, settings: Settings, args: argparse.Namespace,
               extra: Sequence[str] = (), pool: str = "prefork",
               conf: Mapping[str, Any] | None = None) -> None:
    """``pool``: a Celery pool name, or a "module:Class" pool (set as worker_pool);
    ``conf``: Celery settings of this kind of worker only."""
    name = args.name or settings.worker_name or f"{kind}@{socket.gethostname()}"
    # Before anything logs; Celery then leaves it alone (lifecycle's setup_logging).
    logs.configure(settings.log_format, args.loglevel, service=kind, worker=name)
    if settings.queue_webhooks in {q.strip() for q in args.queues.split(",")}:
        problem = secret_problem(settings)  # this worker signs deliveries
        if problem:
            raise SystemExit(f"ocrq {kind} worker: refusing to start: {problem}")
        warn_if_default_secret(settings.webhook_secret)  # allowed explicitly: still said
    configure(settings, preload=not args.no_preload)
    lifecycle.install(threads_pool=pool == THREADS_POOL)
    app = create_celery_app(settings)
    app.conf.update(dict(conf or {}))
    if ":" in pool:  # -P only takes names; Celery uses worker_pool when -P is left out
        app.conf.worker_pool = pool
    argv = ["worker", "-Q", args.queues, "-c", str(args.concurrency), "-n", name,
            "--loglevel", args.loglevel, *(() if ":" in pool else ("-P", pool)), *extra]
    log.info("starting %s worker %s on queues %s", kind, name, args.queues)
    app.worker_main(argv)
