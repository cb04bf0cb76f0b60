"""Per-business webhook secrets, the refusal of the shipped default, and the secret
`ocrq serve` generates for a local run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ocrq.cli.serve import local_secret
from ocrq.settings import Settings
from ocrq.webhooks import DEFAULT_SECRET, parse_secrets, secret_for, secret_problem

ROOT = Path(__file__).resolve().parents[2]


def test_per_business_secrets_fall_back_to_the_global_one() -> None:
    s = Settings(webhook_secret="global-k", webhook_secrets=" acme = a-k , globex=g=k=,")
    assert parse_secrets(s.webhook_secrets) == {"acme": "a-k", "globex": "g=k="}
    assert secret_for(s, "acme") == "a-k" and secret_for(s, "globex") == "g=k="
    assert secret_for(s, "initech") == "global-k"
    assert secret_problem(s) is None


@pytest.mark.parametrize("spec, says", [
    ("acme", "entry 1 (acme)"), ("acme=", "entry 1 (acme)"), ("=s3cret", "entry 1 (?)"),
    ("acme=a,acme=b", "names bid 'acme' twice"),
])
def test_malformed_secrets_are_refused_without_showing_them(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match="OCRQ_WEBHOOK_SECRETS") as info:
        parse_secrets(spec)
    assert says in str(info.value) and "s3cret" not in str(info.value)
    problem = secret_problem(Settings(webhook_secret="k", webhook_secrets=spec))
    assert problem is not None and says in problem


def test_the_default_secret_needs_an_explicit_opt_in() -> None:
    problem = secret_problem(Settings())
    assert problem is not None and "OCRQ_WEBHOOK_SECRET" in problem
    assert "OCRQ_ALLOW_DEFAULT_SECRET=1" in problem
    assert secret_problem(Settings(allow_default_secret=True)) is None
    weak = Settings(webhook_secret="k", webhook_secrets=f"acme={DEFAULT_SECRET}")
    assert "the secret of acme" in (secret_problem(weak) or "")
    env = Settings.from_env({"OCRQ_WEBHOOK_SECRETS": "acme=x", "OCRQ_ALLOW_DEFAULT_SECRET": "1"})
    assert env.webhook_secrets == "acme=x" and env.allow_default_secret


def _worker(queues: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCRQ_")}
    # An unreachable broker: a worker that got past the check would fail differently.
    clean |= {"OCRQ_BROKER_URL": "redis://127.0.0.1:1/0", **env}
    return subprocess.run([sys.executable, "-m", "workers.cpu", "-Q", queues, "-c", "1"],
                          cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_a_webhook_worker_refuses_to_start_with_the_default_secret() -> None:
    done = _worker("cpu,webhooks")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "refusing to start" in done.stderr and "OCRQ_ALLOW_DEFAULT_SECRET" in done.stderr
    done = _worker("cpu,webhooks", OCRQ_WEBHOOK_SECRETS="acme")
    assert done.returncode == 1 and "entry 1 (acme)" in done.stderr, done.stderr[-2000:]


def test_serve_generates_a_secret_for_the_local_run(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    s = local_secret(Settings(), tmp_path)
    path = tmp_path / "webhook-secret"
    assert s.webhook_secret == path.read_text().strip() and len(s.webhook_secret) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in capsys.readouterr().out
    assert secret_problem(s) is None
    assert local_secret(Settings(), tmp_path).webhook_secret == s.webhook_secret  # kept
    own = Settings(webhook_secret="mine")
    assert local_secret(own, tmp_path) is own
    assert local_secret(Settings(allow_default_secret=True), tmp_path).webhook_secret \
        == DEFAULT_SECRET
