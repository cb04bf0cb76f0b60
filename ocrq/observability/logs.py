"""Log lines of the web and worker processes: one JSON object per line, with its job.

``grep <job id>`` over the web's and every worker's log then shows the job end
to end: intake, each stage on the worker that ran it (with its duration and
model versions), the end. The job's fields (``job_id``, ``bid``, ``tid``,
``stage``) live in a context variable, bound around each stage task by the
Celery signals (workers/lifecycle.py) and added to every record that passes
the handler, whichever logger (ocrq's, Celery's, a library's) wrote it. The
process's own fields (``service``: web, cpu or gpu; ``worker``: the node name)
are fixed when it configures logging.

``OCRQ_LOG_FORMAT=text`` keeps the one-line human form, with the job's fields
appended when there is a job.

python-json-logger (not structlog): it is a :class:`logging.Formatter`, so the
project's ``logging.getLogger`` calls, Celery's and every library's records go
through it unchanged; structlog would want its own logger at each call site to
bind fields, and would still need a stdlib bridge for everyone else's records.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")
JOB_FIELDS = ("job_id", "bid", "tid", "stage")
# An immutable default: every bind makes a new dict, so a thread or task never
# changes what another one sees.
_job: ContextVar[Mapping[str, Any]] = ContextVar("ocrq_job", default=MappingProxyType({}))
_process: dict[str, str] = {}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` (None values skipped) to this task's or request's job context."""
    return _job.set({**_job.get(), **{k: v for k, v in fields.items() if v is not None}})


def reset(token: Token[Mapping[str, Any]]) -> None:
    _job.reset(token)


def current() -> dict[str, Any]:
    return dict(_job.get())


@contextmanager
def job_context(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


def set_process(**fields: str) -> None:
    """This process's own fields (``service``, ``worker``), on every line it writes."""
    _process.update({k: v for k, v in fields.items() if v})


class ContextFilter(logging.Filter):
    """Puts the process's and the current job's fields on each record (an ``extra``
    the call gave, e.g. a stage name, wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (*_process.items(), *_job.get().items()):
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The human form: one line, the job's fields in brackets at its end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job = " ".join(f"{k}={getattr(record, k)}" for k in JOB_FIELDS
                       if getattr(record, k, None) is not None)
        return f"{line} [{job}]" if job else line


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"OCRQ_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "text":
        return TextFormatter(TEXT_FORMAT)
    # Every other attribute of a record (the job's fields, an extra) becomes a key.
    return JsonFormatter("%(levelname)s %(name)s %(message)s %(process)d",
                         rename_fields={"levelname": "level", "name": "logger",
                                        "process": "pid"},
                         timestamp="time", json_ensure_ascii=False)


def configure(fmt: str, level: int | str = logging.INFO, **process: str) -> None:
    """The root logger of this process: one stderr handler in ``fmt`` (json | text).

    Called once by a process's entry point (a worker's run_worker, the web's
    create_app()), never on import: it replaces whatever handlers the root had.
    """
    set_process(**process)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def stage_done(logger: logging.Logger, stage: str, ms: float,
               models: Mapping[str, int] | None = None) -> None:
    """The line a stage writes when its engine step is done: its time and models."""
    logger.info("%s done in %.1f ms", stage, ms,
                extra={"event": "stage_done", "stage": str(stage), "duration_ms": round(ms, 2),
                       "models": dict(models or {})})
