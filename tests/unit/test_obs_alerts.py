"""The alert rules in monitoring/alerts/ with the real promtool (Debian package
``prometheus``): ``promtool check rules``, ``promtool test rules``, coverage of every
alert both ways, the annotations every alert needs, its runbook section, and proof
that the unit tests can fail (a weakened threshold is caught)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "monitoring" / "alerts"
RULES, TESTS = ALERTS / "hean.rules.yaml", ALERTS / "hean.rules.test.yaml"
EXPECTED = {"HeanHardStop", "HeanSoftBrake", "HeanDrawdownNearHardLimit", "HeanMarketDataStale",
            "HeanWorkerHeartbeatMissing", "HeanOrderRejectRatioHigh", "HeanSlippageHigh", "HeanReconcileMismatch",
            "HeanOperatorNotReconciling", "HeanExchangeRateLimited"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus "
                                                             "(.ci/run installs it)")


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args, cwd=ALERTS):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_every_alert_has_severity_summary_description_and_runbook_section():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {line.lstrip("#").strip().split()[0].lower() for line in runbook.splitlines() if line.startswith("## ")}
    assert {r["alert"] for r in rules()} == EXPECTED
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert r["annotations"].get(key), f"{r['alert']}: annotation {key} missing"
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == r["alert"].lower() and anchor in anchors, f"docs/runbook.md has no '## {r['alert']}'"


@needs_promtool
def test_promtool_check_rules():
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    n = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {n} rules found" in out.stdout


def test_each_alert_is_tested_firing_and_silent():
    fires, silent = set(), set()
    for t in yaml.safe_load(TESTS.read_text())["tests"]:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else silent).add(a["alertname"])
    assert fires == EXPECTED, f"no firing case for {EXPECTED - fires}"
    assert silent == EXPECTED, f"no silent case for {EXPECTED - silent}"


@needs_promtool
def test_promtool_test_rules_pass():
    out = promtool("test", "rules", str(TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
@pytest.mark.parametrize("old,new", [
    ("> 0.8\n", "> 0.95\n"),                         # drawdown alert made blind
    ("(hean_worker_replay_finished) == 1", "(hean_worker_replay_finished) == 2"),  # finished replays alert
])
def test_promtool_catches_a_broken_rule(tmp_path, old, new):
    text = RULES.read_text()
    assert old in text
    (tmp_path / "hean.rules.yaml").write_text(text.replace(old, new, 1))
    shutil.copy(TESTS, tmp_path / "hean.rules.test.yaml")
    out = promtool("test", "rules", "hean.rules.test.yaml", cwd=tmp_path)
    assert out.returncode != 0 and "FAILED" in (out.stdout + out.stderr)


@needs_promtool
def test_promtool_rejects_a_malformed_rule(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: Bad\n    expr: rate(hean_worker_fills_total[5m]\n")
    out = promtool("check", "rules", str(bad))
    assert out.returncode != 0 and "parse error" in (out.stdout + out.stderr).lower()
