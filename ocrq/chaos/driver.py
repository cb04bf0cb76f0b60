"""The chaos driver: SIGKILLs of worker processes, and a memory limit enforced
the way the kernel's OOM killer enforces a container's.

Kills pick their victim at random (seeded) among the processes under the
rig's worker nodes (a prefork child, which Celery replaces; a GPU worker's
tensor server, which its worker restarts; a threads-pool worker's one process,
which takes its node with it) or a whole worker node, which the driver starts
again as its supervisor would. :class:`Supervisor` restarts a node that exited
on its own, as the deployment's restart policy does. :class:`MemoryLimit` SIGKILLs any
worker process whose resident memory grows past its limit: a page too large
for the worker's memory kills it each time it is decoded, as in production.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import psutil

from ocrq.chaos.rig import Rig


@dataclass
class Kill:
    at: float  # time.monotonic()
    what: str  # "child" | "worker" | "oom" | "exited" (restarted by the Supervisor)
    target: str  # node name
    pid: int


@dataclass
class Chaos:
    rig: Rig
    seed: int = 0
    kills: list[Kill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.RLock()

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Node name -> the processes that run its tasks (prefork children, or itself)."""
        out = {}
        for name, proc in list(self.rig.cluster.processes.items()):  # others restart nodes
            if proc.worker is None or not proc.running():
                continue
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(proc.pid)
                # Pool children (and a GPU worker's tensor server), or the process itself
                # when it runs its tasks on threads.
                out[name] = main.children(recursive=True) or [main]
        return out

    def _is_node(self, node: str, pid: int) -> bool:
        proc = self.rig.cluster.processes.get(node)
        return proc is not None and proc.pid == pid

    def kill_child(self) -> Kill | None:
        """SIGKILL one task-running process (its task is redelivered)."""
        candidates = [(n, p) for n, ps in self.processes().items() for p in ps]
        if not candidates:
            return None
        node, victim = self.random.choice(candidates)
        with self.lock:  # the Supervisor must not see the node gone before its restart
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            kill = Kill(time.monotonic(), "child", node, victim.pid)
            self.kills.append(kill)
            if self._is_node(node, victim.pid):  # its one process was the node: gone with it
                self._restart(node)
        return kill

    def kill_worker(self, node: str | None = None) -> Kill:
        """SIGKILL a whole worker node (process group), then start it again."""
        with self.lock:
            node = node or self.random.choice(sorted(self.processes()))
            kill = Kill(time.monotonic(), "worker", node, self.rig.cluster.processes[node].pid)
            self.kills.append(kill)
            self._restart(node)  # kill -9 to its process group, then start it again
        return kill

    def _restart(self, node: str) -> None:
        with self.lock:  # the driver and the memory limit may both restart a node
            with contextlib.suppress(KeyError):
                self.rig.cluster.kill(node)  # reap what is left of it
            self.rig.start_workers((node,))

    def run(self, n: int, every_s: tuple[float, float], workers_share: float,
            stop: threading.Event) -> None:
        """``n`` kills, one every ``every_s`` (uniform) seconds, a ``workers_share``
        of them whole nodes; until ``stop`` is set."""
        for _ in range(n):
            if stop.wait(self.random.uniform(*every_s)):
                return
            if self.random.random() < workers_share:
                self.kill_worker()
            else:
                self.kill_child()

    def start(self, n: int, every_s: tuple[float, float], workers_share: float = 0.2
              ) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        t = threading.Thread(target=self.run, args=(n, every_s, workers_share, stop),
                             daemon=True)
        t.start()
        return t, stop


class MemoryLimit(threading.Thread):
    """SIGKILL any worker process whose RSS passes its limit: the largest process
    of its kind at rest (same node, same command line: the pool's children, a
    tensor server) plus ``headroom_bytes``. Processes started later (a child
    replacing a killed one) get the limit of their kind."""

    def __init__(self, chaos: Chaos, headroom_bytes: int, period_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.chaos, self.period_s = chaos, period_s
        self.limits: dict[tuple[str, str], int] = {}
        for node, procs in chaos.processes().items():
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    kind = (node, " ".join(p.cmdline()))
                    rss = p.memory_info().rss + headroom_bytes
                    self.limits[kind] = max(self.limits.get(kind, 0), rss)
        self.killed: list[int] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            for node, procs in self.chaos.processes().items():
                for p in procs:
                    with contextlib.suppress(psutil.Error, ProcessLookupError):
                        limit = self.limits.get((node, " ".join(p.cmdline())), 1 << 62)
                        if p.memory_info().rss > limit:
                            self._kill(node, p.pid)

    def _kill(self, node: str, pid: int) -> None:
        with self.chaos.lock:
            was_node = self.chaos._is_node(node, pid)
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)
            self.chaos.kills.append(Kill(time.monotonic(), "oom", node, pid))
            if was_node:  # the node itself: started again
                self.chaos._restart(node)

    def stop(self) -> None:
        self.stopped.set()


class Supervisor(threading.Thread):
    """Starts again a worker node that exited on its own, as the deployment's
    ``restart: unless-stopped`` (compose) does; each is recorded as an "exited" kill.

    Celery's main process exits ("Unrecoverable error: WorkerLostError('Could not
    start worker processes')") when a pool child is SIGKILLed while its pool starts.
    In a soak run at e70ed6a that left the cpu queue without a worker, and intake
    refused every job (503 no_live_worker) until the run gave up.
    """

    def __init__(self, chaos: Chaos, period_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.chaos, self.period_s = chaos, period_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            with self.chaos.lock:  # kills and their restarts happen under it
                for name, proc in list(self.chaos.rig.cluster.processes.items()):
                    if proc.worker is not None and not proc.running():
                        self.chaos.kills.append(Kill(time.monotonic(), "exited", name,
                                                     proc.pid))
                        self.chaos._restart(name)

    def stop(self) -> None:
        self.stopped.set()
