"""Alerts as code: the rules file passes `promtool check rules` and its promtool unit tests,
every alert is covered by a unit test, and the PrometheusRule in deploy/ carries the same groups.
(The rules' signals against a real scrape: tests/test_observability_real.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.parts import require_tool

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "qscore.rules.yaml"
RULE_TESTS = MONITORING / "qscore.rules.test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "components" / "monitoring" / "prometheusrule.yaml"
METRIC_SCALER = ROOT / "deploy" / "components" / "keda-prometheus" / "prometheus-trigger.yaml"

DOCUMENTED_ALERTS = {
    "QScoreLatencySLO",
    "QScoreErrorRatio",
    "QScoreDeadLetters",
    "QScoreTritonUnavailable",
    "QScoreBacklogGrowing",
    "QScoreNoTraffic",
    "QScoreCanaryRegression",
    "QScoreSdkFastPathLost",
    "QScoreInteractionsDropped",
}


def _promtool() -> str:
    return require_tool("promtool", "Debian's prometheus package (scripts/bootstrap.sh installs it)")


def _groups(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["groups"])


def _alerts() -> set[str]:
    return {
        rule["alert"]
        for group in _groups(yaml.safe_load(RULES.read_text()))
        for rule in group["rules"]
        if "alert" in rule
    }


def scaler_queries() -> list[str]:
    """The PromQL of the metric-driven KEDA triggers (tests/test_observability_real.py runs them)."""
    operations = yaml.safe_load(METRIC_SCALER.read_text())
    return [
        op["value"]["metadata"]["query"]
        for op in operations
        if isinstance(op.get("value"), dict) and op["value"].get("type") == "prometheus"
    ]


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_documented_and_unit_tested() -> None:
    assert _alerts() == DOCUMENTED_ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert fired == DOCUMENTED_ALERTS  # each alert fires in some case ...
    assert quiet == DOCUMENTED_ALERTS  # ... and stays quiet in another


def test_prometheus_rule_carries_the_same_groups() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1" and resource["kind"] == "PrometheusRule"
    assert _groups(resource["spec"]) == _groups(yaml.safe_load(RULES.read_text()))
