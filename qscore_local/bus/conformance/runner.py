"""Download the installed SDK's tests, point them at a fresh local endpoint, run them, report.

    python -m qscore_local.bus.conformance              # the four queue/session files
    python -m qscore_local.bus.conformance --short      # the quick subset (default test run)
    python -m qscore_local.bus.conformance -k peek      # any pytest selection on top

The SDK's source distribution (`pip download azure-servicebus==<installed> --no-binary :all:`)
is unpacked under `.qscore/conformance/` (ignored by git; never committed). Its ARM/recording
preparers are replaced by the shim in `shim/` (queues are created through the administration
client on the endpoint); `exclusions.txt` lists the tests not run, each with its reason, and
`long_tests.txt` the tests that sleep for minutes by design, with the per-test timeout they get.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from qscore_local.bus.launcher import LocalBus

HERE = Path(__file__).parent
SHIM = HERE / "shim"
EXCLUSIONS = HERE / "exclusions.txt"
LONG_TESTS = HERE / "long_tests.txt"
TIMEOUTS_ENV = "QSCORE_CONFORMANCE_TIMEOUTS"  # {node id prefix: seconds}, read by shim/conftest.py
DEFAULT_CACHE = Path(".qscore") / "conformance"
FILES = (
    "tests/test_queues.py",
    "tests/async_tests/test_queues_async.py",
    "tests/test_sessions.py",
    "tests/async_tests/test_sessions_async.py",
)
# Quick subset for the default test run: one representative of each area, sync and async.
SHORT = (
    "tests/test_queues.py::TestServiceBusQueue::test_queue_by_queue_client_conn_str_receive_handler_peeklock",
    "tests/test_queues.py::TestServiceBusQueue::test_queue_by_servicebus_client_iter_messages_with_defer",
    "tests/test_queues.py::TestServiceBusQueue::"
    "test_queue_by_servicebus_client_iter_messages_with_retrieve_deferred_receiver_complete",
    "tests/async_tests/test_queues_async.py::TestServiceBusQueueAsync::"
    "test_async_queue_by_queue_client_conn_str_receive_handler_peeklock",
    "tests/test_sessions.py::TestServiceBusSession::test_session_by_session_client_conn_str_receive_handler_peeklock",
    "tests/async_tests/test_sessions_async.py::TestServiceBusAsyncSession::"
    "test_async_session_by_session_client_conn_str_receive_handler_peeklock",
)
PIP_OPTIONS = ("--no-binary", ":all:", "--no-deps", "--quiet", "-d")
PYTEST_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout_method = thread
filterwarnings = ignore
"""


@dataclass
class FileResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + self.failed


def read_exclusions(path: Path = EXCLUSIONS) -> dict[str, str]:
    """`node id  # reason` lines -> {node id prefix: reason}; every entry must give a reason."""
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        node, _, reason = line.partition("#")
        if not reason.strip():
            raise ValueError(f"{path}: exclusion without a reason: {line!r}")
        entries[node.strip()] = reason.strip()
    return entries


def read_long_tests(path: Path = LONG_TESTS) -> dict[str, int]:
    """`node id  seconds  # reason` lines -> {node id prefix: seconds}; every entry must give a reason."""
    entries: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec, _, reason = line.partition("#")
        node, _, seconds = spec.strip().rpartition(" ")
        if not reason.strip() or not node.strip() or not seconds.isdigit():
            raise ValueError(f"{path}: expected `node id  seconds  # reason`: {line!r}")
        entries[node.strip()] = int(seconds)
    return entries


def sdk_tests(cache: Path) -> Path:
    """The unpacked sdist of the installed azure-servicebus, downloaded once into `cache`."""
    version = importlib.metadata.version("azure-servicebus")
    root = cache / f"azure-servicebus-{version}-tests"
    if not (root / "tests" / "test_queues.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"azure-servicebus=={version}",
                *PIP_OPTIONS,
                str(cache),
            ],
            check=True,
        )
        archive = next(cache.glob(f"azure[_-]servicebus-{version}.tar.gz"))
        unpacked = cache / "sdist"
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        # Only the tests: the sdist's own azure/ package must not shadow the installed SDK.
        shutil.copytree(next(unpacked.glob("*/tests")), root / "tests", dirs_exist_ok=True)
        shutil.rmtree(unpacked)
    for shim_file in SHIM.rglob("*.py"):  # replaces the SDK's conftest.py and servicebus_preparer.py
        target = root / "tests" / shim_file.relative_to(SHIM)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shim_file, target)
    (root / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return root


def summarise(junit: Path) -> dict[str, FileResult]:
    results: dict[str, FileResult] = {}
    if not junit.exists():
        return results
    for case in ET.parse(junit).getroot().iter("testcase"):
        classname = case.get("classname", "")
        module = classname.rsplit(".", 1)[0].replace(".", "/") + ".py"
        if module not in FILES:  # xdist's own entries for a crashed worker carry no test module
            continue
        result = results.setdefault(module, FileResult())
        if case.find("skipped") is not None:
            result.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            result.failed += 1
            result.failures.append(case.get("name", ""))
        else:
            result.passed += 1
    return results


def run(selection: list[str], extra: list[str], *, cache: Path, timeout_s: int) -> dict[str, FileResult]:
    root = sdk_tests(cache)
    exclusions = read_exclusions()
    junit = root / "conformance-junit.xml"
    junit.unlink(missing_ok=True)  # never report a previous run's results
    command = [sys.executable, "-m", "pytest", *selection, "-q", "-p", "no:cacheprovider", "-rN"]
    command += [f"--timeout={timeout_s}", f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    command += [f"--deselect={node}" for node in exclusions] + extra
    log_path = root / "bus.log"  # the endpoint's own log, for reading failures
    with LocalBus(queues=[], log_path=log_path) as endpoint:
        env = {
            **os.environ,
            "QSCORE_CONFORMANCE_HOST": endpoint.host,
            "QSCORE_CONFORMANCE_PORT": str(endpoint.port),
            "TEST_PYAMQP": "true",
            TIMEOUTS_ENV: json.dumps(read_long_tests()),
        }
        subprocess.run(command, cwd=root, env=env, check=False)
    return summarise(junit)


def report(results: dict[str, FileResult], exclusions: int) -> str:
    lines = []
    for module, result in sorted(results.items()):
        rate = 100 * result.passed / result.total if result.total else 0.0
        lines.append(
            f"{module}: {result.passed}/{result.total} passed ({rate:.0f}%), {result.skipped} skipped"
        )
    passed = sum(result.passed for result in results.values())
    total = sum(result.total for result in results.values())
    lines.append(f"total: {passed}/{total} passed, {exclusions} excluded (exclusions.txt)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qscore_local.bus.conformance")
    parser.add_argument("--short", action="store_true", help="the quick subset only")
    parser.add_argument(
        "--timeout", type=int, default=240, help="per-test timeout in seconds (long_tests.txt may raise it)"
    )
    parser.add_argument(
        "--workers", type=int, default=6, help="pytest-xdist processes (the tests mostly wait on timers)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args, extra = parser.parse_known_args(argv)
    selection = list(SHORT if args.short else FILES)
    if args.workers > 1 and importlib.util.find_spec("xdist") is not None:
        extra = ["-n", str(args.workers), *extra]
    results = run(selection, extra, cache=args.cache.resolve(), timeout_s=args.timeout)
    if not results:
        print("error: the conformance run produced no results (see the pytest output above)", file=sys.stderr)
        return 2
    print(report(results, len(read_exclusions())))
    if args.json is not None:
        payload = {module: vars(result) for module, result in results.items()}
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0 if all(not result.failed for result in results.values()) else 1
