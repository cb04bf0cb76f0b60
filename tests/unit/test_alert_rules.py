"""The Prometheus alert rules (compose/prometheus/alerts.yml), unit-tested by promtool.

promtool comes with Debian's ``prometheus`` package (scripts/services.sh installs
it). alerts_test.yml holds, for every rule, a case where it fires and one where
it stays quiet; these tests run it, check that it covers every rule both ways,
and that it notices a rule being changed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "compose" / "prometheus"


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: apt-get install prometheus (scripts/services.sh)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _rules() -> list[str]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["alert"] for g in doc["groups"] for r in g["rules"]]


def test_rules_and_config_are_valid() -> None:
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        res = _promtool(*args)
        assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_fires_in_one_case_and_stays_quiet_in_another() -> None:
    res = _promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    cases = [t for case in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
             for t in case.get("alert_rule_test", [])]
    fires = {t["alertname"] for t in cases if t.get("exp_alerts")}
    quiet = {t["alertname"] for t in cases if not t.get("exp_alerts")}
    assert fires == quiet == set(_rules())


@pytest.mark.parametrize("old, new", [
    ("/ sum(rate(ocrq_jobs_total[10m])) > 0.1", "/ sum(rate(ocrq_jobs_total[10m])) > 0.5"),
    ('ocrq_model_status{status="FAILED"} == 1', 'ocrq_model_status{status="READY"} == 1'),
    ("ocrq_queue_consumers{queue=\"gpu\"} == 0", "ocrq_queue_consumers{queue=\"gpu\"} >= 0"),
])
def test_the_rule_tests_notice_a_changed_rule(tmp_path: Path, old: str, new: str) -> None:
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    rules = (tmp_path / "alerts.yml").read_text()
    assert old in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(old, new))
    assert _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path).returncode != 0
