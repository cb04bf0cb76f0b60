"""``ocrq flower`` starts Celery's monitoring UI behind a login, never without one."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner

from ocrq.cli import main

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flower_refuses_to_start_without_a_login() -> None:
    for env in ({}, {"OCRQ_FLOWER_AUTH": "admin"}, {"OCRQ_FLOWER_AUTH": "admin:"}):
        out = CliRunner().invoke(main, ["flower"], env={"OCRQ_FLOWER_AUTH": "", **env})
        assert out.exit_code == 1 and "needs a login" in out.output, out.output


@pytest.fixture
def flower_url() -> Iterator[str]:
    port = _free_port()
    env = {"OCRQ_FLOWER_AUTH": "ops:s3cret", "OCRQ_BROKER_URL": "redis://127.0.0.1:6379/9",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "ocrq", "flower", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "flower exited"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_flower_answers_only_with_its_login(flower_url: str) -> None:
    assert requests.get(flower_url, timeout=5).status_code == 401
    assert requests.get(flower_url, auth=("ops", "wrong"), timeout=5).status_code == 401
    ok = requests.get(flower_url, auth=("ops", "s3cret"), timeout=5)
    assert ok.status_code == 200 and "Flower" in ok.text
