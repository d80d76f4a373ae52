"""`qscore enqueue` and `qscore watch`: against the real local bus (a fake worker answers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from qscore.producer import ProducerSettings
from qscore.producer.files import RequestFileError, load_request_file
from qscore_cli.enqueue_job import EnqueueJob, run_enqueue
from qscore_local.bus.launcher import BusEndpoint
from qscore_local.bus.stats import queue_counts
from tests.fixtures.producer import FAKE_LABEL, UNCONSUMED_QUEUE, FakeWorker

QSCORE = [sys.executable, "-c", "from qscore_cli import main; main()"]
DIGITS_REQUEST = {
    "model": "digits",
    "inputs": {"pixels": {"datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}},
}


def _qscore(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QSCORE_SERVICEBUS")}
    clean["COLUMNS"] = "200"  # Rich tables are as wide as the terminal; there is none here
    return subprocess.run(
        [*QSCORE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_enqueue_without_a_bus_is_a_one_line_error() -> None:
    assert "QSCORE_SERVICEBUS_CONNECTION" in _one_line_error(_qscore("enqueue"))


def test_watch_without_a_bus_is_a_one_line_error() -> None:
    assert "--connection" in _one_line_error(_qscore("watch"))


def test_demo_bad_option_is_a_one_line_error() -> None:
    assert "--requests" in _one_line_error(_qscore("demo", "--requests", "0"))


def test_request_file_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(RequestFileError, match="is not JSON"):
        load_request_file(path)
    path.write_text(json.dumps([DIGITS_REQUEST, {"model": "digits"}]))
    with pytest.raises(RequestFileError, match=r"request 1: inputs: Field required"):
        load_request_file(path)
    with pytest.raises(RequestFileError, match="cannot read"):
        load_request_file(tmp_path / "missing.json")
    path.write_text(json.dumps(DIGITS_REQUEST))
    assert load_request_file(path)[0].model == "digits"


def test_enqueue_bad_file_is_a_one_line_error(tmp_path: Path, producer_bus: BusEndpoint) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": "digits", "inputs": {}}))
    env = {"QSCORE_SERVICEBUS_CONNECTION": producer_bus.connection_string}
    assert "inputs" in _one_line_error(_qscore("enqueue", "--file", str(path), env=env))


async def test_enqueue_job_prints_replies_and_summary(
    producer_bus: BusEndpoint, fake_worker: FakeWorker
) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=20)
    console = Console(record=True, width=160)
    assert await run_enqueue(settings, EnqueueJob(count=30, show=3), console=console)
    text = console.export_text()
    assert text.count(f"label=[{FAKE_LABEL}]") == 3
    assert "every request answered" in text and "replies" in text


async def test_enqueue_job_from_file_repeats_to_count(
    tmp_path: Path, producer_bus: BusEndpoint, fake_worker: FakeWorker
) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(DIGITS_REQUEST))
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=20)
    seen_before = len(fake_worker.seen)
    console = Console(record=True, width=160)
    assert await run_enqueue(settings, EnqueueJob(file=path, count=4), console=console)
    assert len(fake_worker.seen) - seen_before == 4


async def test_enqueue_no_wait_and_watch_commands(producer_bus: BusEndpoint) -> None:
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": producer_bus.connection_string,
        "QSCORE_REQUEST_QUEUE": UNCONSUMED_QUEUE,
    }
    sent = _qscore("enqueue", "--count", "5", "--no-wait", "--binary", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"sent 5 requests to {UNCONSUMED_QUEUE}" in sent.stdout
    counts = await queue_counts(producer_bus.connection_string)
    assert counts[UNCONSUMED_QUEUE].active == 5
    watched = _qscore("watch", "--interval", "0.3", "--duration", "1", env=env)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert UNCONSUMED_QUEUE in watched.stdout and "dead-lettered" in watched.stdout
