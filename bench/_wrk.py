"""wrk, the load generator of bench/load.py: Lua scripts for submits and polls, one run
with its summary and the CPU it and the watched processes used."""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

BOUNDARY = "ocrqbenchboundary7MA4YWxkTrZu0gW"
# wrk's Lua: a JSON summary on stdout (latencies in microseconds; non-2xx/3xx answers
# count as errors). wrk prints it on SIGINT too, which ends a --jobs fill.
LUA_COMMON = """
function done(s, lat, req)
  local e = s.errors
  io.write(string.format('\\nRESULT {"requests": %d, "duration_us": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50": %d, "p99": %d, '
    .. '"max": %d}\\n', s.requests, s.duration, e.connect, e.read, e.write, e.status,
    e.timeout, lat:percentile(50), lat:percentile(99), lat.max))
end
"""


@dataclass
class Run:
    """One wrk run: its summary and the generator's own CPU time."""

    name: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    wrk_cpu_s: float
    web_cpu_s: float = 0.0  # the web processes' CPU seconds during the run
    redis_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def per_request_ms(self, cpu_s: float) -> float:
        return 1000 * cpu_s / self.requests if self.requests else 0.0

    @property
    def ceiling(self) -> float:
        """Requests/s one core of wrk could generate at this request mix."""
        return self.requests / self.wrk_cpu_s if self.wrk_cpu_s else float("inf")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's workers)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def wrk(name: str, url: str, lua: str, tmp: Path, args: argparse.Namespace,
        until: Callable[[], bool] | None = None) -> Run:
    """Run wrk with ``lua`` (plus the summary hook) for --duration s, or until ``until()``
    holds; its summary, its CPU time and the web's and Redis's (CPU per request:
    comparable even when the machine is busy)."""
    script = tmp / f"{name.split()[0]}.lua"
    script.write_text(lua + LUA_COMMON)
    secs = 24 * 3600 if until is not None else args.duration
    argv = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{secs:.0f}s",
            "--timeout", "10s", "-s", str(script), url]
    watched = (args.web_pid, args.redis_pid)
    before, cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN), [cpu_seconds(p) for p in watched]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    while until is not None and proc.poll() is None and not until():
        time.sleep(0.5)
    if until is not None:
        proc.send_signal(signal.SIGINT)  # wrk stops and prints its summary
    out = proc.communicate()[0]
    after, cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN), [cpu_seconds(p) for p in watched]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    r = json.loads(line.removeprefix("RESULT "))
    errors = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Run(name, r["requests"], r["duration_us"] / 1e6, errors, r["p50"] / 1000,
               r["p99"] / 1000, cpu, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])


def auth_lua(token: str | None) -> str:
    return "" if token is None else f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def submit_lua(body: Path, token: str | None) -> str:
    return (f'wrk.method = "POST"\nlocal f = io.open("{body}", "rb")\n'
            'wrk.body = f:read("*a")\nf:close()\n'
            f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
            + auth_lua(token))


def poll_lua(ids: list[str], token: str | None) -> str:
    table = ",".join(f'"{i}"' for i in ids)
    return (auth_lua(token) + f"local ids = {{{table}}}\nlocal i = 0\n"
            "function request()\n  i = i % #ids + 1\n"
            '  return wrk.format("GET", "/v1/jobs/" .. ids[i])\nend\n')


