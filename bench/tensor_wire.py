"""The tensor server's wire on this machine: round trips, and what runtime=remote costs a page.

    python bench/tensor_wire.py [DATA_DIR] [--limit N] [--repeat N]

Table 1: protocol round trips of typical arrays (uint8 pixels out, float32
maps back) to an echo server in another process, as a feeder talks to the
tensor server: the wire alone, no model.

Table 2: the dev receipts read by the Engine in this process with ONNX Runtime
(the peer) and with ``runtime=remote`` against ``python -m workers.tensor_server``
on the CPU (same models, one intra-op thread on both sides, no batching wait):
median ms per page, their ratio, pages whose text is the same, and the bytes
each page sends and receives (the server's STATS). Measured on CPU it shows
the wire's share of a page; the recognition logits dominate the bytes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_parser  # first: checks that ocrq is installed

# isort: split
import numpy as np

from ocrq.engine import Engine
from ocrq.evaluation.dataset import Sample, load_manifest
from ocrq.models.serving.client import hello, stats
from ocrq.models.serving.protocol import (
    Op,
    Request,
    recv_reply,
    recv_request,
    send_reply,
    send_request,
)
from ocrq.settings import Settings

SHAPES = [(1, 1024, 1024, 3), (8, 48, 320, 3), (64, 48, 640, 3), (1, 2048, 2048, 3)]


def _echo(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    conn, _ = srv.accept()
    while (req := recv_request(conn, 1 << 31, 60.0)) is not None:
        assert req.array is not None
        n, h, w = req.array.shape[:3]
        send_reply(conn, req.op, req.request_id, time.monotonic() + 60,
                   array=np.zeros((n, 1, h, w), np.float32))


def wire_table(repeat: int) -> None:
    path = tempfile.mkdtemp() + "/echo.sock"
    proc = mp.get_context("spawn").Process(target=_echo, args=(path,))
    proc.start()
    while not os.path.exists(path):
        time.sleep(0.05)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    print("| request (uint8 NHWC) | reply (float32) | round trip ms (median) | MB/s both ways |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        images = np.random.default_rng(0).integers(0, 255, shape, np.uint8)
        times = []
        for i in range(repeat + 5):
            t0 = time.perf_counter()
            send_request(sock, Request(Op.RUN_IMAGES, i, "x", images), time.monotonic() + 60)
            reply = recv_reply(sock, 1 << 31, time.monotonic() + 60)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times[5:])
        assert reply.array is not None
        mb = (images.nbytes + reply.array.nbytes) / 1e6
        print(f"| {shape} | {tuple(reply.array.shape)} | {med * 1000:.2f} | {mb / med:.0f} |")
    sock.close()
    proc.join(10)


def page_table(data: Path, limit: int | None) -> None:
    items = load_manifest(data, limit)
    base = Settings.from_env().with_(threads=1, cpu_copies=1, batch_wait_ms=0.0)
    sock = tempfile.mkdtemp() + "/tensor.sock"
    env = {**os.environ, "OCRQ_THREADS": "1", "OCRQ_CPU_COPIES": "1",
           "OCRQ_BATCH_WAIT_MS": "0", "OCRQ_MODEL_ROOT": str(base.model_root)}
    server = subprocess.Popen([sys.executable, "-m", "workers.tensor_server", "--socket",
                               sock, "-l", "WARNING"], env=env)
    try:
        while True:
            try:
                hello(sock)
                break
            except OSError:
                time.sleep(0.1)
        os.environ["OCRQ_TENSOR_SOCKET"] = sock  # load_runtime("remote") reads it
        local = Engine.from_settings(base)
        remote = Engine.from_settings(base.with_(runtime="remote", tensor_socket=sock))
        rows = _pages(items, local, remote, sock)
    finally:
        server.terminate()
        server.wait(10)
    ms_l, ms_r = [r[0] for r in rows], [r[1] for r in rows]
    same = sum(r[2] for r in rows)
    print("\n| engine | ms/page median | ratio | same text | MB sent/page | MB received/page |")
    print("|---|---|---|---|---|---|")
    print(f"| in-process ONNX Runtime (peer) | {statistics.median(ms_l):.0f} | 1.00 | | | |")
    print(f"| runtime=remote, tensor server on CPU | {statistics.median(ms_r):.0f} | "
          f"{statistics.median(ms_r) / statistics.median(ms_l):.2f} | {same}/{len(rows)} | "
          f"{statistics.median(r[3] for r in rows):.1f} | "
          f"{statistics.median(r[4] for r in rows):.1f} |")


def _pages(items: list[Sample], local: Engine, remote: Engine, sock: str
           ) -> list[tuple[float, float, bool, float, float]]:
    rows = []
    for item in items:
        image = item.load()
        local.run(image)  # warm both (first-shape costs) before timing
        remote.run(image)
        t0 = time.perf_counter()
        want = local.run(image)
        t1 = time.perf_counter()
        before = stats(sock)
        got = remote.run(image)
        t2 = time.perf_counter()
        after = stats(sock)
        rows.append(((t1 - t0) * 1000, (t2 - t1) * 1000, got.text() == want.text(),
                     (after["bytes_in"] - before["bytes_in"]) / 1e6,
                     (after["bytes_out"] - before["bytes_out"]) / 1e6))
    return rows


def main() -> None:
    ap = data_parser(__doc__, limit=10)
    ap.add_argument("--repeat", type=int, default=30, help="round trips per shape")
    args = ap.parse_args()
    print(f"host: {os.cpu_count()} cores; python {sys.version.split()[0]}\n")
    wire_table(args.repeat)
    page_table(args.data, args.limit)


if __name__ == "__main__":
    main()
