"""``ocrq models``: the repository, the desired versions and what workers serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from redis import Redis

from ocrq.cli.errors import one_line
from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.rollout import wait as wait_rollout
from ocrq.cluster.snapshot import render_table
from ocrq.errors import OcrqError
from ocrq.evaluation.gate import run_gate
from ocrq.evaluation.runner import format_table
from ocrq.models.control import ModelControl
from ocrq.models.repository import ModelRepository
from ocrq.settings import Settings
from ocrq.storage import Database

STATUS_COLUMNS = ("worker", "model", "version", "status", "device", "memory")


def _settings() -> Any:
    return Settings.from_env()


def _repo(settings: Any) -> Any:
    repo = ModelRepository(settings.model_root)
    repo.ensure_defaults()
    return repo


def _redis(settings: Any) -> Any:
    return Redis.from_url(settings.redis_url)


def _control(settings: Any) -> Any:
    return ModelControl(Database(settings.database_url), _redis(settings), _repo(settings))


@click.group("models")
def models() -> None:
    """Model versions: import, list, status, activate, rollback, evaluate."""


@models.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--like", type=int, default=None,
              help="Copy input spec, labels and dictionary from this version (default: latest).")
def import_(name: str, file: Path, like: int | None) -> None:
    """Import FILE (ONNX weights) as the next version of model NAME.

    Importing never changes what serves: when a database is configured and NAME
    was never activated, the version serving so far is recorded as desired first.
    """
    settings = _settings()
    repo = _repo(settings)
    try:
        before = repo.latest(name)
        _pin_before_import(settings, name, before)
        manifest = repo.add_version(name, file, like=like)
    except OcrqError as exc:
        raise one_line(exc) from exc
    entry = manifest.files[0]
    click.echo(f"imported {name} v{manifest.version} ({entry.bytes} bytes, sha256 "
               f"{entry.sha256[:16]}…) into {manifest.directory}")
    click.echo(f"not active yet: ocrq models evaluate {name} {manifest.version} --data DIR; "
               f"ocrq models activate {name} {manifest.version}")


def _pin_before_import(settings: Any, name: str, serving: int) -> None:
    try:
        control = _control(settings)
        if name not in control.desired().versions:
            control.activate(name, serving, actor="ocrq models import",
                             note="pinned before importing a new version")
    except Exception as exc:  # no database here (embedded use): nothing to pin
        click.echo(f"note: desired versions not recorded ({type(exc).__name__}); workers "
                   "without a desired version serve the latest on disk", err=True)


@models.command("list")
@click.argument("name", required=False)
@click.option("--verify", is_flag=True, help="Check every file's sha256 (reads all weights).")
def list_(name: str | None, verify: bool) -> None:
    """Versions in the repository (OCRQ_MODEL_ROOT)."""
    settings = _settings()
    repo = _repo(settings)
    rows = []
    try:
        for model in [name] if name else repo.names():
            for version in repo.versions(model):
                m = repo.manifest(model, version)
                weights = next(f for f in m.files if f.path == m.weights)
                row = {"model": model, "version": str(version), "bytes": str(weights.bytes),
                       "sha256": weights.sha256[:16], "source": _source(m.source)}
                if verify:
                    try:
                        repo.verify(m)
                        row["integrity"] = "ok"
                    except OcrqError as exc:
                        row["integrity"] = exc.message
                rows.append(row)
    except OcrqError as exc:
        raise one_line(exc) from exc
    columns = ("model", "version", "bytes", "sha256", "source") + (("integrity",) if verify else ())
    click.echo(render_table(rows, columns))


def _source(source: dict[str, str]) -> str:
    if "package" in source:
        return f"{source['package']} {source.get('version', '')}".strip()
    return source.get("file", "")


@models.command("status")
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """What every live worker process serves, with status, device and memory."""
    settings = _settings()
    snapshot = read_snapshot(_redis(settings))
    desired = _desired_or_none(settings)
    if as_json:
        click.echo(json.dumps({"desired": desired, "workers": snapshot.to_dict()["workers"],
                               "rows": snapshot.status_rows()}, indent=2))
        return
    if desired is not None:
        click.echo(f"desired: {json.dumps(desired)}")
    if not snapshot.workers:
        click.echo(f"no live workers (no heartbeat in {settings.redis_url})")
        return
    click.echo(render_table(snapshot.status_rows(), STATUS_COLUMNS))


def _desired_or_none(settings: Any) -> dict[str, object] | None:
    # A database that is down or never migrated is an error (one line, exit 1):
    # the desired versions are what an operator compares the workers against.
    return _control(settings).desired().to_dict()


def _report_rollout(settings: Any, name: str, version: int | None, bid: str | None,
                    wait: float) -> None:
    if not wait or version is None:
        return

    state = wait_rollout(_redis(settings), name, version, bid, timeout_s=wait)
    for where in state.serving:
        click.echo(f"  {where}: serving v{version}")
    for where, reason in state.failed.items():
        click.echo(f"  {where}: FAILED ({reason}); previous version still serving")
    for where in state.pending:
        click.echo(f"  {where}: still pending after {wait:.0f}s")
    for where in state.lazy:
        click.echo(f"  {where}: {name} not loaded yet (loads v{version} on first use)")
    if state.failed or state.pending:
        sys.exit(1)


@models.command("activate")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--bid", default=None, help="Only for this business id (a canary).")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for live workers to report it (0: do not wait).")
def activate(name: str, version: int, bid: str | None, wait: float) -> None:
    """Make VERSION of NAME the serving one (globally or for one --bid)."""
    settings = _settings()
    try:
        change = _control(settings).activate(name, version, bid=bid, actor="ocrq cli")
    except Exception as exc:
        raise one_line(exc) from exc
    scope = f"bid {bid}" if bid else "all bids"
    before = "global" if change.previous_version is None else f"v{change.previous_version}"
    click.echo(f"{name}: {before} -> v{version} ({scope})")
    _report_rollout(settings, name, version, bid, wait)


@models.command("rollback")
@click.argument("name")
@click.option("--bid", default=None, help="Withdraw this bid's canary instead.")
@click.option("--wait", type=float, default=30.0, show_default=True)
def rollback(name: str, bid: str | None, wait: float) -> None:
    """Return NAME to the version active before the current one."""
    settings = _settings()
    control = _control(settings)
    try:
        change = control.rollback(name, bid=bid, actor="ocrq cli")
    except Exception as exc:
        raise one_line(exc) from exc
    if bid:
        click.echo(f"{name}: canary v{change.previous_version} withdrawn for bid {bid}")
        _report_rollout(settings, name, control.desired().versions.get(name), None, wait)
    else:
        click.echo(f"{name}: v{change.previous_version} -> v{change.version}")
        _report_rollout(settings, name, change.version, None, wait)


@models.command("history")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
def history(name: str | None, limit: int) -> None:
    """Activation log (newest first)."""
    rows = _control(_settings()).history(name, limit)
    cols = ("id", "created_at", "model", "bid", "version", "previous_version", "actor", "note")
    click.echo(render_table([{c: "" if r[c] is None else str(r[c]) for c in cols} for r in rows],
                            cols))


@models.command("evaluate")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--data", "data", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled folder with manifest.jsonl (the format of `ocrq eval`).")
@click.option("--against", type=int, default=None,
              help="Baseline version (default: the active one).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N pages.")
@click.option("--max-drop", type=float, default=0.0, show_default=True,
              help="Largest allowed drop of word F1, char F1 or detection recall.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(name: str, version: int, data: Path, against: int | None, limit: int | None,
             max_drop: float, as_json: bool) -> None:
    """Score candidate VERSION of NAME against the active version; exit 1 if it is worse."""
    settings = _settings()
    baseline = against if against is not None else _active_version(settings, name, version)
    try:
        gate = run_gate(settings, name, version, baseline, data, limit=limit,
                        max_drop=max_drop, progress=sys.stderr.isatty())
    except OcrqError as exc:
        raise one_line(exc) from exc
    if as_json:
        click.echo(json.dumps(gate.to_dict(), indent=2))
    else:
        click.echo(format_table(gate.results))
        deltas = ", ".join(f"{k} {v:+.4f}" for k, v in gate.deltas.items())
        verdict = "PASS" if gate.passed else "FAIL"
        click.echo(f"{verdict}: {name} v{version} vs v{baseline}: {deltas} "
                   f"(max drop {max_drop})")
    if not gate.passed:
        sys.exit(1)


def _active_version(settings: Any, name: str, candidate: int) -> int:
    """The desired global version; without a database, the newest below the candidate."""
    try:
        version = _control(settings).desired().versions.get(name)
        if version is not None:
            return int(version)
    except Exception as exc:
        click.echo(f"note: no desired versions ({type(exc).__name__}); comparing with the "
                   "newest version below the candidate", err=True)
    older = [v for v in _repo(settings).versions(name) if v < candidate]
    if not older:
        raise click.ClickException(f"no baseline for {name} v{candidate}: pass --against")
    return older[-1]
