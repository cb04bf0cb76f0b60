"""The processes of an ocrq deployment on this machine, started and stopped in one place.

``ocrq serve``, the integration tests' cluster harness and the benches all go
through here: Celery workers through their entry points (``python -m
workers.cpu`` / ``workers.gpu`` with their command-line flags), the web intake
under waitress, and any other program the deployment needs (a Redis server,
say) through :meth:`LocalCluster.start_process`.

- Settings travel as ``OCRQ_*`` variables (:func:`settings_env`): a process
  reads back exactly the :class:`Settings` it was given; each worker may have
  its own (a GPU worker on torch/CUDA beside CPU workers on ONNX Runtime).
- Each process runs in its own session, so a Ctrl-C in the terminal reaches
  only the parent, which then stops the children in order.
- Ready means: a worker's node heartbeats with its queues and every one of its
  processes reports the OCR models READY; the web intake answers ``/readyz``.
- Stopping is SIGTERM, then SIGKILL after a deadline; processes started with
  ``service=True`` (what the workers depend on) are stopped after the rest.

::

    with LocalCluster(settings, log_dir=tmp) as cluster:
        cluster.start_worker(WorkerSpec("gpu", "gpu1", "gpu", 4), settings.with_(runtime="torch"))
        cluster.start_worker(WorkerSpec("cpu", "cpu1", "cpu,webhooks", 2))
        cluster.start_web(port=8080)
        cluster.wait_ready()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType

import psutil
from redis import Redis
from redis.exceptions import RedisError

from ocrq.cluster.heartbeat import read_snapshot
from ocrq.cluster.snapshot import Snapshot
from ocrq.names import OCR_MODELS, ModelKind
from ocrq.settings import Settings

READY_TIMEOUT_S = 120.0  # model loads on a busy 2-core machine take a while
STOP_GRACE_S = 30.0  # a warm shutdown lets running stage tasks finish
WORKER_KINDS = ("cpu", "gpu")


class LocalClusterError(RuntimeError):
    """A process exited early or did not become ready (the message ends with its log)."""


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without its ``OCRQ_*`` variables,
    plus every field of ``settings`` as ``OCRQ_<FIELD>``.

    All fields, not only the changed ones, so that nothing the parent happens to
    have in its environment can make a child's ``Settings.from_env()`` differ.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("OCRQ_")}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:  # unset (plans_file: the bundled plans); absent reads back as None
            continue
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        env[f"OCRQ_{f.name.upper()}"] = text
    return env


@dataclass(frozen=True)
class WorkerSpec:
    """One Celery worker node, started as ``python -m workers.<kind>``."""

    kind: str  # "cpu": prefork, one process per -c; "gpu": one process, -c task threads
    name: str  # node name; without "@" this machine's host name is appended (Celery's %h)
    queues: str = ""  # comma-separated; "": the entry point's default queues
    concurrency: int = 1
    loglevel: str = "INFO"
    preload: bool = True  # False: --no-preload (webhook-only); ready without models

    def __post_init__(self) -> None:
        if self.kind not in WORKER_KINDS:
            raise ValueError(f"worker kind {self.kind!r}: not one of {', '.join(WORKER_KINDS)}")

    @property
    def node(self) -> str:
        return self.name if "@" in self.name else f"{self.name}@{socket.gethostname()}"

    @property
    def processes(self) -> int:
        """Process heartbeats of a ready worker: its prefork children, or itself (gpu)."""
        return self.concurrency if self.kind == "cpu" else 1

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", f"workers.{self.kind}", "-c", str(self.concurrency),
                "-n", self.node, "-l", self.loglevel]
        if self.queues:
            argv += ["-Q", self.queues]
        if not self.preload:
            argv.append("--no-preload")
        return argv

    def ready_in(self, snapshot: Snapshot) -> bool:
        """Its node consumes queues and each process has every OCR model READY."""
        worker = next((w for w in snapshot.workers if w.name == self.node), None)
        if worker is None or not worker.queues:
            return False
        if not self.preload:
            return True
        # The second recogniser is off under OCRQ_SECOND_READING=0 and not preloaded then.
        needed = {str(m) for m in OCR_MODELS if m != ModelKind.STR2}
        return len(worker.processes) >= self.processes and all(
            needed <= set(p.ready()) for p in worker.processes)


@dataclass
class LocalProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None  # None: output goes to the parent's stdout/stderr
    worker: WorkerSpec | None = None
    url: str = ""  # the web intake's base URL
    service: bool = False  # stopped after the others

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return self.log.read_text(errors="replace")[-chars:]

    def ready(self, snapshot: Snapshot | None) -> bool:
        if self.worker is not None:
            return snapshot is not None and self.worker.ready_in(snapshot)
        return http_ok(f"{self.url}/readyz") if self.url else True


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):  # refused, not up yet, 503: not ready
        return False


def wait_redis(url: str, timeout_s: float = 30.0) -> None:
    """Until a Redis server answers PING at ``url`` (one just started, say)."""
    client = Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except RedisError as exc:  # refused or loading its data: not up yet
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"no Redis at {url} after {timeout_s:.0f} s: {exc}") from exc
            time.sleep(0.1)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S,
                   ) -> None:
    """SIGTERM to each, all at once; SIGKILL to the process group of any still running
    ``grace_s`` later; then descendants a process left behind are killed.

    SIGTERM goes to the leader only: Celery's warm shutdown finishes the running
    tasks and stops its pool, whereas its prefork children reset SIGTERM to the
    default and would die mid-task if the whole group got it.
    """
    running = [p for p in procs if p.poll() is None]
    descendants = {p.pid: _descendants(p.pid) for p in running}
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # leader alive: its group id is still ours
            p.wait()
        for child in descendants[p.pid]:
            with contextlib.suppress(psutil.Error):
                child.kill()  # psutil refuses a pid reused by another process


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class LocalCluster:
    """Processes of one deployment on this machine; :meth:`stop` (or leaving the
    ``with`` block) ends them all.

    ``settings``: what every process gets unless started with its own;
    ``log_dir``: each process writes ``<log_dir>/<name before "@">.log`` (None:
    the parent's stdout/stderr); ``environ``: the non-``OCRQ_*`` environment of
    the children (default: this process's).
    """

    def __init__(self, settings: Settings, *, log_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.environ = dict(os.environ if environ is None else environ)
        self.processes: dict[str, LocalProcess] = {}
        self._redis: Redis | None = None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def redis(self) -> Redis:
        """Where the workers heartbeat (``settings.redis_url``)."""
        if self._redis is None:
            self._redis = Redis.from_url(self.settings.redis_url)
        return self._redis

    def snapshot(self) -> Snapshot:
        return read_snapshot(self.redis)

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name.split('@')[0]}.log"

    # --- starting ----------------------------------------------------------------------
    def start_process(self, name: str, argv: Sequence[str], *, settings: Settings | None = None,
                      log: Path | None = None, service: bool = False, url: str = "",
                      worker: WorkerSpec | None = None) -> LocalProcess:
        """Start ``argv`` with ``settings`` (default: the cluster's) in its environment."""
        old = self.processes.get(name)
        if old is not None and old.running():
            raise LocalClusterError(f"{name} is already running (pid {old.pid})")
        log = log or self.log_path(name)
        out = log.open("ab") if log is not None else None
        try:
            popen = subprocess.Popen(
                list(argv), env=settings_env(settings or self.settings, self.environ),
                stdout=out, stderr=subprocess.STDOUT if out else None,
                start_new_session=True)  # Ctrl-C: only the parent gets it, and stops us
        finally:
            if out is not None:
                out.close()  # the child holds its own descriptor
        proc = LocalProcess(name, popen, log, worker, url, service)
        self.processes[name] = proc
        return proc

    def start_worker(self, spec: WorkerSpec, settings: Settings | None = None, *,
                     log: Path | None = None) -> LocalProcess:
        return self.start_process(spec.node, spec.argv(), settings=settings, log=log,
                                  worker=spec)

    def start_web(self, host: str = "127.0.0.1", port: int = 8080, threads: int = 8, *,
                  name: str = "web", settings: Settings | None = None, processes: int = 1,
                  server: str = "waitress") -> LocalProcess:
        """The Flask intake: under waitress (one process, ``threads`` threads), or under
        gunicorn's gthread workers (``processes`` x ``threads``; POSIX only)."""
        if server == "gunicorn":
            argv = [sys.executable, "-m", "gunicorn", f"--bind={host}:{port}",
                    f"--workers={processes}", "--worker-class=gthread",
                    f"--threads={threads}", "web:create_app()"]
        elif server == "waitress" and processes == 1:
            argv = [sys.executable, "-m", "waitress", f"--listen={host}:{port}",
                    f"--threads={threads}", "--call", "web:create_app"]
        else:
            raise ValueError(f"web server {server!r} with {processes} processes: waitress "
                             "runs one process, gunicorn any number")
        return self.start_process(name, argv, settings=settings, url=f"http://{host}:{port}")

    # --- watching ----------------------------------------------------------------------
    def wait_ready(self, names: Sequence[str] | None = None,
                   timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every named process (default: all but services) is ready; raises
        :class:`LocalClusterError` as soon as one exits, or at the deadline."""
        chosen = list(names) if names is not None else [
            n for n, p in self.processes.items() if not p.service]
        pending = [self.processes[n] for n in chosen]
        deadline = time.monotonic() + timeout_s
        while pending:
            for p in pending:
                if not p.running():
                    raise LocalClusterError(
                        f"{p.name} exited with status {p.popen.returncode}: {p.log_tail()}")
            snap = self.snapshot() if any(p.worker for p in pending) else None
            pending = [p for p in pending if not p.ready(snap)]
            if pending and time.monotonic() > deadline:
                raise LocalClusterError(f"{pending[0].name} not ready after {timeout_s:.0f} s: "
                                        f"{pending[0].log_tail()}")
            if pending:
                time.sleep(0.2)

    def exited(self) -> dict[str, int]:
        """Name -> exit status of every process that is no longer running."""
        return {n: int(p.popen.returncode) for n, p in self.processes.items()
                if not p.running()}

    # --- stopping ----------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """``sig`` to the whole process group at once, as if its machine went away."""
        proc = self.processes.pop(name)
        if proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        proc.popen.wait(timeout=STOP_GRACE_S)

    def stop(self, names: Sequence[str] | None = None, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the named processes (default: all), together: first workers and web,
        then the services among them."""
        chosen = set(self.processes if names is None else names)
        for service in (False, True):
            group = [n for n, p in self.processes.items() if n in chosen and p.service is service]
            stop_processes([self.processes[n].popen for n in group], grace_s)
            for n in group:
                del self.processes[n]
