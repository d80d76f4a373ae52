"""Stopping a child process the one way the local stack, the tools and the tests all want."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], *, grace_s: float = 10.0, group: bool = False) -> None:
    """SIGTERM (to its process group with `group`), wait up to `grace_s`, then SIGKILL and reap.

    A process that has already exited is only reaped."""
    if process.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
