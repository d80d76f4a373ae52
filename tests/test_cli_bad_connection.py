"""A malformed --connection is a one-line `error: ...` with exit code 2, not a traceback, for
`qscore worker`, `qscore enqueue` and `qscore functions run-local` (run as a person would)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = [
    ["worker", "--connection", "garbage", "--no-health"],
    ["enqueue", "--connection", "garbage", "--count", "1", "--timeout", "1"],
    ["functions", "run-local", "--connection", "garbage", "--requests", "1", "--triton-url", "127.0.0.1:1"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_a_malformed_connection_string_is_one_line(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSCORE_SERVICEBUS_")}
    done = subprocess.run(
        [sys.executable, "-c", "from qscore_cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert output.startswith("error: ") and len(output.splitlines()) == 1, output
    assert "connection string" in output


def test_worker_health_host_flag_and_variable() -> None:
    from qscore_cli.worker import _settings

    base = {"servicebus_connection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b"}
    assert _settings(dict(base), no_health=False).health_host == "127.0.0.1"
    assert _settings({**base, "health_host": "0.0.0.0"}, no_health=False).health_host == "0.0.0.0"
