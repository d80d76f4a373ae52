"""Drain on SIGTERM/SIGINT: the first signal asks the worker to stop receiving and finish what
it holds within the grace period; a second one stops waiting for in-flight work."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """`stopping` is set by the first signal (or `request()`), `hurry` by the second."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()
        self.requested_at: float | None = None  # time.monotonic() of the first request

    def request(self, reason: str = "requested") -> None:
        if self.stopping.is_set():
            log.warning("second stop (%s): abandoning in-flight work now", reason)
            self.hurry.set()
            return
        log.info("stopping (%s): no new messages; finishing in-flight work", reason)
        self.requested_at = time.monotonic()
        self.stopping.set()

    @property
    def is_set(self) -> bool:
        return self.stopping.is_set()


def install_signal_handlers(stop: StopRequest) -> Callable[[], None]:
    """Route SIGTERM/SIGINT to `stop`; returns a function that restores the defaults."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop.request, signal.Signals(signum).name)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support
            pass

    def restore() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return restore
