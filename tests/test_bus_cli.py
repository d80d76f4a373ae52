"""`qscore bus serve` / `qscore bus stats` as a person runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from qscore_local.bus.launcher import BusEndpoint
from tests.fixtures.ports import free_port


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from qscore_cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def test_stats_prints_a_table_of_counts(bus: BusEndpoint) -> None:
    result = run_cli("bus", "stats", "--connection", bus.connection_string)
    assert result.returncode == 0, result.stderr
    assert "scoring-requests" in result.stdout and "dead-letter" in result.stdout


def test_stats_against_nothing_is_one_line_error() -> None:
    dead = f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true"
    result = run_cli("bus", "stats", "--connection", dead)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_serve_prints_address_and_queues(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "from qscore_cli import main; main()", "bus", "serve"]
    command += ["--port", str(port), "--data-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
    finally:
        process.terminate()
        process.wait(10)
    output = "".join(lines)
    assert f"amqp://127.0.0.1:{port}" in output
    assert "queue: scoring-requests" in output and "queue: scoring-replies" in output


def test_serve_with_bad_config_is_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "queues.yaml"
    config.write_text("queues:\n  - name: ok\n    lock_duration_s: -1\n")
    started = time.monotonic()
    result = run_cli("bus", "serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_serve_with_latency_says_so_and_bad_latency_is_one_line_error(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "from qscore_cli import main; main()", "bus", "serve"]
    command += ["--port", str(port), "--data-dir", str(tmp_path), "--latency-ms", "5", "--jitter-ms", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
    finally:
        process.terminate()
        process.wait(10)
    assert "network latency: 5 ms each way + up to 1 ms jitter\n" in lines
    for bad in (["--jitter-ms", "3"], ["--latency-ms", "-1"]):
        result = run_cli("bus", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path), *bad)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
