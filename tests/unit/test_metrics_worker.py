"""A worker's multiprocess metrics with real forked processes (in a child Python, so
this test process keeps prometheus_client's ordinary in-memory mode): counters of
exited processes are kept, the running-task gauge of a killed one is dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from prometheus_client import generate_latest
    from ocrq.observability import worker as wm
    from ocrq.observability.metrics import metrics

    wm.use_multiprocess_dir(Path(sys.argv[1]))
    for how in ("exit", "kill"):
        pid = os.fork()
        if pid == 0:  # a pool child: one finished job, one task still running
            m = metrics()
            m.jobs.labels(bid="acme", tid="ocr", status="succeeded").inc()
            m.tasks_in_progress.labels(task="ocrq.detect").inc()
            if how == "exit":
                m.tasks_in_progress.labels(task="ocrq.detect").dec()
                wm._process_shutdown()
                os._exit(0)
            os.kill(os.getpid(), signal.SIGKILL)  # no shutdown signal: swept at scrape
        os.waitpid(pid, 0)
    metrics().tasks_in_progress.labels(task="ocrq.reorder").inc()  # this one is alive
    sys.stdout.write(generate_latest(wm.registry(lambda: [os.getpid()])).decode())
""")


def test_sum_over_exited_and_killed_pool_processes(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # a previous run's: emptied
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(directory)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert 'ocrq_jobs_total{bid="acme",status="succeeded",tid="ocr"} 2.0' in lines
    # Only the living process's running task: the killed child's was swept.
    assert [line for line in lines if line.startswith("ocrq_tasks_in_progress{")] == [
        'ocrq_tasks_in_progress{task="ocrq.reorder"} 1.0']
    assert any(line.startswith("ocrq_gpu_available ") for line in lines)
    assert not (directory / "counter_999999.db").exists()
