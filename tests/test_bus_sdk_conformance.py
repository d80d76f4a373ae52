"""The azure-servicebus SDK's own queue and session tests against the local endpoint (issue 12).

The SDK's tests for the installed version are downloaded from PyPI at run time (never committed)
by `qscore_local.bus.conformance`; without network the tests skip. The default run takes the
short subset; the full run is slow-marked (`pytest -m slow tests/test_bus_sdk_conformance.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qscore_local.bus.conformance.runner import FILES, read_exclusions, read_long_tests

ROOT = Path(__file__).resolve().parents[1]


def _conformance(tmp_path: Path, *args: str, timeout_s: int) -> dict[str, dict[str, object]]:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "qscore_local.bus.conformance", "--json", str(out), *args]
    try:
        subprocess.run(command, cwd=ROOT, timeout=timeout_s, check=False, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the conformance run did not finish within {timeout_s}s")
    if not out.exists():
        pytest.skip("the SDK's tests could not be downloaded (no network?)")
    results: dict[str, dict[str, object]] = json.loads(out.read_text())
    return results


def test_exclusions_each_give_a_reason_and_name_a_conformance_file() -> None:
    exclusions = read_exclusions()
    assert all(reason for reason in exclusions.values())
    assert all(node.split("::")[0] in FILES for node in exclusions)


def test_long_tests_name_a_conformance_file_and_are_not_excluded() -> None:
    long_tests = read_long_tests()
    assert long_tests and all(node.split("::")[0] in FILES for node in long_tests)
    assert not set(long_tests) & set(read_exclusions())


def test_short_conformance_subset_passes(tmp_path: Path) -> None:
    results = _conformance(tmp_path, "--short", "--workers", "3", "--timeout", "60", timeout_s=240)
    failures = {module: result["failures"] for module, result in results.items() if result["failed"]}
    assert not failures


@pytest.mark.slow
def test_full_conformance_run_reports_every_file(tmp_path: Path) -> None:
    # The default 240 s per test: the scheduled-message tests wait 2 min for their messages by design,
    # and long_tests.txt gives its tests up to 8 minutes each; 6 workers keep the run within the hour.
    results = _conformance(tmp_path, timeout_s=3600)
    assert set(results) == set(FILES)
    passed = sum(int(str(result["passed"])) for result in results.values())
    total = sum(int(str(result["passed"])) + int(str(result["failed"])) for result in results.values())
    assert passed / total >= 0.9
