"""`qscore demo` for real: local bus, local Triton and `qscore worker` subprocesses.

The short form (500 requests, one worker) runs by default; the 20 000-request run of the README
is `@pytest.mark.slow`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

QSCORE = [sys.executable, "-c", "from qscore_cli import main; main()"]


def _run_demo(tmp_path: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], dict]:
    summary_path = tmp_path / "summary.json"
    command = [*QSCORE, "demo", "--run-dir", str(tmp_path / "run"), "--json", str(summary_path), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads(summary_path.read_text())


def _assert_all_answered(summary: dict, requests: int) -> None:
    assert summary["requests"] == requests
    assert summary["replies"] == requests and summary["ok"] == requests
    assert summary["timed_out"] == 0 and summary["errors"] == {}
    assert summary["dead_lettered"] == 0
    assert summary["accuracy"] >= 0.95
    assert sum(int(size) * count for size, count in summary["triton_batch_sizes"].items()) >= requests


def test_demo_answers_every_request(tmp_path: Path) -> None:
    result, summary = _run_demo(
        tmp_path, "--requests", "500", "--workers", "1", "--plot", str(tmp_path / "latency.png"), timeout=240
    )
    _assert_all_answered(summary, 500)
    for stage in ("end_to_end", "queue_wait", "batch_wait", "inference", "total"):
        assert summary["latency_ms"][stage]["count"] == 500
    assert "every request answered" in result.stdout
    assert (tmp_path / "latency.png").stat().st_size > 0


@pytest.mark.slow
def test_demo_twenty_thousand_requests(tmp_path: Path) -> None:
    _, summary = _run_demo(tmp_path, "--requests", "20000", "--workers", "2", timeout=1200)
    _assert_all_answered(summary, 20000)


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [*QSCORE, "demo", "--requests", "100000", "--workers", "1", "--run-dir", str(run_dir)]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        # Running for real: bus, Triton and the worker are up and the worker is consuming.
        while time.monotonic() < deadline and demo.poll() is None:
            children = psutil.Process(demo.pid).children(recursive=True)
            worker_log = run_dir / "worker-0.log"
            if worker_log.exists() and "consuming" in worker_log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        assert demo.poll() is None, demo.communicate()[0][-3000:]
        time.sleep(2)
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"
    for process in alive:
        os.kill(process.pid, signal.SIGKILL)
