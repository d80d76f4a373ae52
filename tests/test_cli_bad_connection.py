"""A malformed --connection is a one-line `error: ...` with exit code 2, not a traceback, for
`qscore worker`, `qscore enqueue` and `qscore functions run-local` (run as a person would)."""

from __future__ import annotations

import os
import subprocess
import sys

COMMANDS = [
    ["worker", "--connection", "garbage", "--no-health"],
    ["enqueue", "--connection", "garbage", "--count", "1", "--timeout", "1"],
    ["functions", "run-local", "--connection", "garbage", "--requests", "1", "--triton-url", "127.0.0.1:1"],
]


def test_a_malformed_connection_string_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSCORE_SERVICEBUS_")}
    started = [
        subprocess.Popen(
            [sys.executable, "-c", "from qscore_cli import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for args in COMMANDS
    ]
    for args, process in zip(COMMANDS, started, strict=True):
        output, _ = process.communicate(timeout=60)
        output = output.strip()
        assert process.returncode == 2, (args, output)
        assert "Traceback" not in output
        assert output.startswith("error: ") and len(output.splitlines()) == 1, (args, output)
        assert "connection string" in output


def test_worker_health_host_flag_and_variable() -> None:
    from qscore_cli.worker import _settings

    base = {"servicebus_connection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b"}
    assert _settings(dict(base), no_health=False).health_host == "127.0.0.1"
    assert _settings({**base, "health_host": "0.0.0.0"}, no_health=False).health_host == "0.0.0.0"
