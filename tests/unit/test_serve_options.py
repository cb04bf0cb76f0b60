"""`ocrq serve`'s options refused before anything starts (a usage error, exit 2)."""

from __future__ import annotations

from click.testing import CliRunner

from ocrq.cli.serve import serve


def test_waitress_with_several_processes_is_a_usage_error() -> None:
    out = CliRunner().invoke(serve, ["--server", "waitress", "--web-processes", "2",
                                     "--no-migrate"])
    assert out.exit_code == 2 and "waitress runs one process" in out.output


def test_zero_threads_is_refused() -> None:
    out = CliRunner().invoke(serve, ["--threads", "0", "--no-migrate"])
    assert out.exit_code == 2 and "--threads" in out.output
