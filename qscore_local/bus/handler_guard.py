"""`guarded`: a BusServer event handler that fails is logged, never allowed to stop the loop
(qscore_local/bus/server.py; the endpoint never crashes on one connection's bad frame)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qscore_local.bus.server import BusServer

log = logging.getLogger("qscore_local.bus")


def guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Log a failing event handler instead of letting it stop the reactor (the endpoint never crashes)."""

    @functools.wraps(method)
    def run(self: BusServer, event: Any) -> None:
        try:
            method(self, event)
        except Exception:
            log.exception("error handling %s", method.__name__)

    return run
