"""The fault suite's long form: N jobs through web + workers while everything breaks.

    .venv/bin/python bench/soak.py [--jobs 500] [--kills 20] [--flush] [--gpu-kind cpu]

One deployment on private servers (ocrq.chaos.rig: its own redis-server with
AOF and mariadbd on free ports; web under waitress, a GPU worker and a CPU
worker through LocalCluster; a webhook receiver in this process), the same
rig and chaos driver as tests/faults/. While the jobs go in (multipart POST,
retried on 503 after Retry-After, as a client should):

- ``--kills`` SIGKILLs of worker processes spread over the run (pool children
  and, one in four, whole nodes, started again), at random (seeded) points;
- Redis restarted at 30 % of the submissions (about 2 s down), MariaDB at 50 %
  (4 s down), the webhook receiver down at 70 % for 3x the longest retry interval;
- one poison page (7700 x 7700, 178 MB decoded) that a worker memory limit
  (RSS at rest + 150 MB, enforced like the OOM killer) kills every time;
- ``--flush``: instead of the Redis restart, Redis is flushed (a lost broker).

At the end, from the database, Redis and the receiver's log: statuses, jobs
lost (not terminal), duplicated results, unreported failures (no webhook),
wrong texts (against the in-process engine, i.e. `ocrq run`), keys left.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import REPO  # noqa: F401  first: checks that ocrq is installed
from _service import line_image

from ocrq.chaos.driver import Chaos, MemoryLimit, Supervisor
from ocrq.chaos.rig import Audit, Rig
from ocrq.engine import Engine
from ocrq.images import decode_image
from ocrq.settings import Settings

TEXTS = ["Invoice 4711", "Total 12.50 EUR", "Paper A4 500 sheets", "Thank you 2026"]


def pages(model_root: Path) -> list[tuple[bytes, str]]:
    settings = Settings(model_root=model_root)
    engine = Engine.from_settings(settings)
    out = []
    for text in TEXTS:
        data = line_image(text)
        out.append((data, engine.run(decode_image(data, "p.png", settings)).text()))
    return out


def poison() -> bytes:
    import cv2  # only for the poison page
    import numpy as np

    ok, png = cv2.imencode(".png", np.full((7700, 7700), 255, np.uint8))
    assert ok
    return png.tobytes()


def faults(rig: Rig, flush: bool) -> dict[float, tuple[str, Callable[[], object]]]:
    """Share of submissions -> (name, action)."""
    assert rig.mariadb is not None
    hooks_down = 3 * rig.settings.webhook_backoff_max_s
    redis = ("redis flush", rig.redis.flush) if flush else \
        ("redis restart", lambda: rig.redis.restart(2.0))
    return {0.3: redis, 0.5: ("mariadb restart", lambda: rig.mariadb.restart(4.0)),
            0.7: ("receiver down", lambda: (rig.receiver.down(), time.sleep(hooks_down),
                                            rig.receiver.up()))}


def flushed(rig: Rig, ids: list[str]) -> dict[str, str]:
    """Jobs a flush may rightly fail, with their reason (else a success is expected)."""
    ok = ("lost", "image_expired", "deadline_exceeded")
    return {i: j.error["code"] for i, j in rig.db_jobs(ids).items()
            if j.status == "failed" and j.error and j.error.get("code") in ok}


def run(args: argparse.Namespace, tmp: Path) -> int:
    model_root = args.model_root or Settings.from_env().model_root
    texts = pages(model_root)
    rig = Rig(tmp, model_root=model_root, gpu_kind=args.gpu_kind,
              cpu_concurrency=args.cpu_concurrency, job_deadline_s=args.deadline,
              visibility_timeout_s=30, task_time_limit_s=60)  # stalled: re-driven at 90 s
    t_start = time.monotonic()
    with rig:
        print(f"rig ready in {time.monotonic() - t_start:.0f} s")
        chaos = Chaos(rig, seed=args.seed)
        oom = MemoryLimit(chaos, 150 * 2**20)
        oom.start()
        supervisor = Supervisor(chaos)  # compose's restart: unless-stopped
        supervisor.start()
        ids, expected, events = [], {}, []
        bad = rig.submit(poison(), "poison.png")
        t0 = time.monotonic()
        stop = threading.Event()
        # Kills spread over the time the submissions are expected to take.
        every = (0.5 * args.jobs / args.rate / args.kills, 1.5 * args.jobs / args.rate / args.kills)
        driver = threading.Thread(target=chaos.run, args=(args.kills, every, 0.25, stop),
                                  daemon=True)
        driver.start()
        pending = dict(faults(rig, args.flush))
        for i in range(args.jobs):
            for share in [s for s in pending if i >= s * args.jobs]:
                name, action = pending.pop(share)
                events.append((time.monotonic() - t0, name))
                threading.Thread(target=action, daemon=True).start()
            data, text = texts[i % len(texts)]
            job_id = rig.submit(data, f"p{i}.png")
            ids.append(job_id)
            expected[job_id] = text
            time.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
        submitted = time.monotonic() - t0
        driver.join(timeout=600)
        stop.set()
        left = ""
        try:
            rig.wait_terminal([bad, *ids], timeout_s=args.deadline + 120)
        except AssertionError as exc:
            left = str(exc)
        done = time.monotonic() - t0
        oom.stop()
        supervisor.stop()
        rig.wait_webhooks([bad, *ids], timeout_s=120)
        may_fail = flushed(rig, ids) if args.flush else {}
        audit = rig.audit([bad, *ids], expected, {bad: "worker_lost", **may_fail})
    report(args, audit, chaos, oom, events, submitted, done, left)
    return 1 if audit.problems or left else 0


def report(args: argparse.Namespace, audit: Audit, chaos: Chaos, oom: MemoryLimit,
           events: list[tuple[float, str]], submitted: float, done: float, left: str) -> None:
    kinds = {k: sum(1 for x in chaos.kills if x.what == k)
             for k in ("child", "worker", "oom", "exited")}
    rows = [
        ("jobs (+1 poison)", f"{args.jobs} (+1)"),
        ("submitted in / all terminal after", f"{submitted:.0f} s / {done:.0f} s"),
        ("statuses", ", ".join(f"{k} {v}" for k, v in sorted(audit.statuses.items()))),
        ("failure codes", ", ".join(f"{k} {v}" for k, v in sorted(audit.errors.items())) or "-"),
        ("kills: children / whole workers / memory limit (+ nodes exited, restarted)",
         f"{kinds['child']} / {kinds['worker']} / {kinds['oom']} (+ {kinds['exited']})"),
        ("faults (s after the first submit)", "; ".join(f"{n} at {t:.0f}" for t, n in events)),
        ("webhook POSTs received / duplicates (same event id)",
         f"{audit.webhooks} / {audit.duplicate_webhooks}"),
        ("problems (lost, duplicated, stuck, unreported, wrong text, keys left)",
         str(len(audit.problems))),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for p in audit.problems[:20]:
        print("  problem:", p)
    if left:
        print("  not terminal:", left)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--rate", type=float, default=3.0, help="submissions per second")
    ap.add_argument("--flush", action="store_true", help="flush Redis instead of restarting it")
    ap.add_argument("--gpu-kind", default="gpu", choices=("gpu", "cpu"),
                    help="worker on the gpu queue: workers.gpu (on CPU here) or prefork")
    ap.add_argument("--cpu-concurrency", type=int, default=2)
    ap.add_argument("--deadline", type=int, default=300, help="OCRQ_JOB_DEADLINE_S")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--model-root", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep logs in this folder")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="ocrq-soak-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
