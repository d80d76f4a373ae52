"""Pick up routing-table changes (promote, rollback, flights) without restarting the worker.

`qscore release package` (and a ConfigMap update in Kubernetes) replaces the file by renaming a
new one into place, so the file's identity changes even when two writes land within the same
mtime tick: the watcher compares (mtime, inode, size), not the mtime alone.
"""

from __future__ import annotations

import asyncio
import logging

from qscore.registry import ModelRegistry

log = logging.getLogger(__name__)

FileIdentity = tuple[int, int, int]


def _identity(registry: ModelRegistry) -> FileIdentity | None:
    try:
        status = registry.path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_ino, status.st_size)


async def watch_registry(registry: ModelRegistry, *, every_s: float = 2.0) -> None:
    """Reload the routing table whenever its file changes; runs until cancelled."""
    seen = await asyncio.to_thread(_identity, registry)
    while True:
        await asyncio.sleep(every_s)
        current = await asyncio.to_thread(_identity, registry)
        if current == seen:
            continue
        seen = current
        try:
            await asyncio.to_thread(registry.reload)
            log.info("model routing table reloaded from %s", registry.path)
        except Exception as exc:  # a half-edited file by hand: keep the last good routes
            log.warning("could not reload the model routing table %s: %r", registry.path, exc)
