"""The azure-servicebus SDK's own queue and session tests against the local endpoint (issue 12).

The SDK's tests for the installed version are downloaded from PyPI at run time (never committed)
by `qscore_local.bus.conformance`; without network the tests skip (fail under CI=true). The
default run takes the short subset; the full run is slow-marked
(`pytest -m slow tests/test_bus_sdk_conformance.py`).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qscore_local.bus.conformance.runner import DEFAULT_CACHE, FILES, SHORT, read_exclusions, read_long_tests
from tests.fixtures.parts import missing_part

ROOT = Path(__file__).resolve().parents[1]


def _conformance(tmp_path: Path, *args: str, timeout_s: int) -> dict[str, dict[str, object]]:
    """The run's per-file results. A run that could not download the SDK's tests is a missing
    part (skipped locally, failed under CI=true); one that crashed or produced no results, or in
    which nothing passed, fails the test: an empty run proves nothing."""
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "qscore_local.bus.conformance", "--json", str(out), *args]
    try:
        run = subprocess.run(
            command, cwd=ROOT, timeout=timeout_s, check=False, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the conformance run did not finish within {timeout_s}s")
    tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-20:])
    if not out.exists():
        if not _sdk_tests_present():
            missing_part("the azure-servicebus SDK's tests (pip downloads its sdist)", tail)
        pytest.fail(f"the conformance run wrote no results (exit {run.returncode}):\n{tail}", pytrace=False)
    assert run.returncode in (0, 1), f"the conformance run crashed (exit {run.returncode}):\n{tail}"
    results: dict[str, dict[str, object]] = json.loads(out.read_text())
    passed = sum(int(str(result["passed"])) for result in results.values())
    assert results and passed > 0, f"nothing passed in the conformance run: {results}\n{tail}"
    return results


def _sdk_tests_present() -> bool:
    version = importlib.metadata.version("azure-servicebus")
    return (ROOT / DEFAULT_CACHE / f"azure-servicebus-{version}-tests" / "tests" / "test_queues.py").exists()


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
    # Every test of the subset ran and passed: none lost to a crashed worker or a collection error.
    short_files = {node.split("::")[0] for node in SHORT}
    assert set(results) == short_files
    assert sum(int(str(result["passed"])) for result in results.values()) == len(SHORT)


@pytest.mark.slow
def test_full_conformance_run_reports_every_file(tmp_path: Path) -> None:
    # The default 240 s per test: the scheduled-message tests wait 2 min for their messages by design,
    # and long_tests.txt gives its tests up to 8 minutes each; 6 workers keep the run within the hour.
    results = _conformance(tmp_path, timeout_s=3600)
    assert set(results) == set(FILES)
    passed = sum(int(str(result["passed"])) for result in results.values())
    total = sum(int(str(result["passed"])) + int(str(result["failed"])) for result in results.values())
    assert passed / total >= 0.9
