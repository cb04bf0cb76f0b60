"""Paired added latency of the service against `ocrq run`, one job at a time.

    ocrq serve --port 8765 --workers 1 &      # against the configured broker/DB
    python bench/latency.py [N] [URL]         # N receipts of ../shared/eval/dev (default 25)

For each page: in-process `load_image` + `Engine.run` (what `ocrq run` does),
then the same file through the service (multipart POST, poll every 20 ms);
service latency = request sent -> the job's `finished_at` (stamped by the
worker). Two passes; the second is reported. Also prints how much of the
service latency lies outside the stage times the worker reports.
"""

import datetime
import glob
import statistics
import sys
import time
from pathlib import Path

import requests

from ocrq.engine import Engine
from ocrq.images import load_image
from ocrq.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def ts(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    base = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8765"
    fs = sorted(glob.glob(str(REPO / ".." / "shared" / "eval" / "dev" / "*.jpg")))[:n]
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
                time.sleep(0.02)
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
    print("| pages | median added latency | quartiles | median outside stage times |")
    print("|---:|---:|---:|---:|")
    print(f"| {len(added)} | {statistics.median(added):.1f} ms | {q[0]:.1f} / {q[2]:.1f} ms "
          f"| {statistics.median(outside):.1f} ms |")


if __name__ == "__main__":
    main()
