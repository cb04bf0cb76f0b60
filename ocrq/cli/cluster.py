"""``ocrq cluster`` (live snapshot, drift against the expected layout) and
``ocrq workers`` (drain / resume for hot updates)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from redis import Redis

from ocrq.cluster.drain import drain, resume
from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import render_table
from ocrq.cluster.static import Layout, LayoutError, diff
from ocrq.errors import OcrqError
from ocrq.pipeline.app import create_celery_app
from ocrq.settings import Settings


def _settings() -> Any:
    return Settings.from_env()


def _redis(settings: Any) -> Any:
    return Redis.from_url(settings.redis_url)


def _celery(settings: Any) -> Any:
    return create_celery_app(settings)


@click.group("cluster")
def cluster() -> None:
    """The live snapshot of workers and its drift from the expected layout."""


@cluster.command("show")
@click.option("--json", "as_json", is_flag=True)
def show(as_json: bool) -> None:
    """Live workers (from heartbeats) and the routing table built from them."""
    settings = _settings()
    snapshot = read_snapshot(_redis(settings))
    if as_json:
        click.echo(json.dumps(snapshot.to_dict(), indent=2))
        return
    if not snapshot.workers:
        click.echo(f"no live workers (no heartbeat in {settings.redis_url})")
        return
    rows = [{"worker": w.name, "group": w.group, "queues": ",".join(w.queues) or "(none)",
             "draining": "yes" if w.draining else "", "processes": str(len(w.processes)),
             "models ready": " ".join(f"{n}:v{v}" for n, v in sorted(w.ready_models().items()))}
            for w in snapshot.workers]
    click.echo(render_table(rows, ("worker", "group", "queues", "draining", "processes",
                                   "models ready")))
    click.echo("")
    routes = [{"queue": q, "workers": ",".join(r["workers"]),
               "models": " ".join(f"{n}:{'/'.join(f'v{v}' for v in vs)}"
                                  for n, vs in r["models"].items())}
              for q, r in snapshot.routing_table().items()]
    click.echo(render_table(routes, ("queue", "workers", "models")))


@cluster.command("diff")
@click.argument("expected", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def diff_command(expected: Path, as_json: bool) -> None:
    """Compare the live snapshot with EXPECTED (YAML layout); exit 1 on drift."""
    try:
        layout = Layout.load(expected)
    except LayoutError as exc:
        raise click.ClickException(exc.message) from exc
    drift = diff(layout, read_snapshot(_redis(_settings())))
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in drift], indent=2))
    elif drift:
        click.echo(render_table([d.to_dict() for d in drift],
                                ("group", "worker", "kind", "detail")))
    else:
        click.echo("no drift: the live cluster matches the expected layout")
    if drift:
        sys.exit(1)


@click.group("workers")
def workers() -> None:
    """Take a worker out of rotation and put it back (cluster hot update)."""


@workers.command("drain")
@click.argument("name")
@click.option("--queue", "queues", multiple=True, help="Only these queues (default: all).")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for in-flight tasks.")
def drain_command(name: str, queues: tuple[str, ...], timeout: float) -> None:
    """Stop NAME consuming and wait for its in-flight tasks; exit 1 if some remain."""
    settings = _settings()
    try:
        report = drain(_celery(settings), _redis(settings), name, queues=list(queues) or None,
                       timeout_s=timeout)
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{name}: stopped consuming {', '.join(report.queues) or '(nothing)'}; "
               f"{report.in_flight_at_start} task(s) in flight, waited {report.waited_s}s")
    if report.drained:
        click.echo(f"{name}: drained (safe to update; `ocrq workers resume {name}`)")
    else:
        click.echo(f"{name}: {len(report.left_in_flight)} task(s) still running after "
                   f"{timeout:.0f}s: {', '.join(report.left_in_flight)}")
        sys.exit(1)


@workers.command("resume")
@click.argument("name")
@click.option("--queue", "queues", multiple=True, help="Queues to consume (default: drained).")
def resume_command(name: str, queues: tuple[str, ...]) -> None:
    """Make NAME consume again the queues a drain removed."""
    settings = _settings()
    try:
        resumed = resume(_celery(settings), _redis(settings), name, queues=list(queues) or None)
    except OcrqError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{name}: consuming {', '.join(resumed)} again")
