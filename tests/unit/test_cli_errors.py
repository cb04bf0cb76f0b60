"""Service errors in the ``ocrq`` command: one line naming the cause, exit status 1,
no traceback (a newcomer's first `ocrq models status` before `ocrq db upgrade`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrq.cli import main


@pytest.mark.parametrize("args", [["models", "status"], ["models", "history"]])
def test_a_database_never_migrated_is_one_line_and_exit_1(tmp_path: Path,
                                                         args: list[str]) -> None:
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
           "OCRQ_REDIS_URL": "redis://127.0.0.1:6379/15", "OCRQ_MODEL_ROOT": str(tmp_path)}
    out = CliRunner().invoke(main, args, env=env)
    assert out.exit_code == 1, out.output
    assert "run `ocrq db upgrade`" in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_redis_not_answering_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {"OCRQ_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    out = CliRunner().invoke(main, ["cluster", "show"], env=env)
    assert out.exit_code == 1, out.output
    assert out.output.startswith("Error: Redis:") and "Traceback" not in out.output
