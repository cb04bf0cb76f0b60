"""Paired added latency of the service against `ocrq run`, one job at a time.

    ocrq serve --port 8765 --workers 1 &      # against the configured broker/DB
    python bench/latency.py [--pages N] [--url URL] [--poll-s S]

For each page: in-process `load_image` + `Engine.run` (what `ocrq run` does),
then the same file through the service (multipart POST, then GET every
``--poll-s`` seconds: the polling itself costs the web process CPU on the
same cores, so it is a parameter);
service latency = request sent -> the job's `finished_at` (stamped by the
worker). Two passes; the second is reported. Also prints how much of the
service latency lies outside the stage times the worker reports.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import statistics
import time
from pathlib import Path

from _common import DEFAULT_DATA  # first: checks that ocrq is installed

# isort: split
import requests

from ocrq.engine import Engine
from ocrq.images import load_image
from ocrq.settings import Settings


def ts(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=25, help="receipts of ../shared/eval/dev")
    ap.add_argument("--url", default="http://127.0.0.1:8765")
    ap.add_argument("--poll-s", type=float, default=0.2, help="seconds between status GETs")
    args = ap.parse_args()
    n, base = args.pages, args.url
    fs = sorted(glob.glob(str(DEFAULT_DATA / "*.jpg")))[:n]
    eng = Engine.from_settings(Settings.from_env())
    eng.run(load_image(fs[0]))
    added: list[float] = []
    outside: list[float] = []
    for rep in range(2):
        for f in fs:
            t = time.perf_counter()
            eng.run(load_image(f), f)
            inproc = time.perf_counter() - t
            data = Path(f).read_bytes()
            t0 = time.time()
            job = requests.post(f"{base}/v1/jobs", timeout=30,
                                files={"image": (Path(f).name, data, "image/jpeg")}).json()
            while True:
                time.sleep(args.poll_s)
                d = requests.get(f"{base}/v1/jobs/{job['id']}", timeout=30).json()
                if d["status"] in ("succeeded", "failed", "cancelled"):
                    break
            if d["status"] != "succeeded":
                raise SystemExit(f"{f}: job {d['status']}: {d.get('error')}")
            latency = ts(d["finished_at"]) - t0
            if rep:
                added.append(1000 * (latency - inproc))
                outside.append(1000 * latency - sum(d["result"]["timings_ms"].values()))
    q = statistics.quantiles(added, n=4)
    print("| pages | poll every | median added latency | quartiles | median outside stages |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {len(added)} | {args.poll_s * 1000:.0f} ms | {statistics.median(added):.1f} ms "
          f"| {q[0]:.1f} / {q[2]:.1f} ms | {statistics.median(outside):.1f} ms |")


if __name__ == "__main__":
    main()
