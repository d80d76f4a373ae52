"""Pick up registry changes (promote, rollback, flights) without restarting the worker."""

from __future__ import annotations

import asyncio
import logging

from qscore.registry import ModelRegistry

log = logging.getLogger(__name__)


def _mtime(registry: ModelRegistry) -> float | None:
    try:
        return registry.path.stat().st_mtime
    except OSError:
        return None


async def watch_registry(registry: ModelRegistry, *, every_s: float = 2.0) -> None:
    """Reload the registry file whenever it changes; runs until cancelled."""
    seen = _mtime(registry)
    while True:
        await asyncio.sleep(every_s)
        current = _mtime(registry)
        if current == seen:
            continue
        seen = current
        try:
            registry.reload()
            log.info("model registry reloaded from %s", registry.path)
        except Exception as exc:  # a half-edited file by hand: keep the last good routes
            log.warning("could not reload the model registry %s: %r", registry.path, exc)
