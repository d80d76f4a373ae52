"""Messages the worker holds (received, not settled), and renewal of their locks.

Renewal runs as its own task and each check awaits the broker, so it cannot be starved the
way a busy loop starved the SDK's AutoLockRenewer (azure-sdk-for-python #31427); the receive
loop also awaits between batches. A message is renewed once half its lock span has passed,
so no lock duration needs configuring: it is read off each message's `locked_until_utc`.
Every message due goes out in one renew-lock request (one per message would make renewal of a
thousand held messages queue up behind, and hold up, batch settlement on the same link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

RETRY_RENEWAL_S = 1.0
RENEW_CHUNK = 500  # lock tokens per renew-lock request


class LockRenewer(Protocol):
    async def renew_many(self, messages: Sequence[Any]) -> list[Any]:
        """Renew every message's lock; returns those that could not be renewed."""
        ...


@dataclass
class _Held:
    message: Any
    renew_at: float  # monotonic


def _lock_span_s(message: Any, default_s: float) -> float:
    locked_until = getattr(message, "locked_until_utc", None)
    if locked_until is None:
        return default_s
    return max(0.5, locked_until.timestamp() - time.time())


class HeldMessages:
    """Tracks unsettled messages by identity; bounds how many the worker holds."""

    def __init__(self, *, limit: int, default_lock_s: float = 30.0) -> None:
        self.limit = limit
        self.default_lock_s = default_lock_s
        self._held: dict[int, _Held] = {}
        self._room = asyncio.Event()
        self._room.set()

    def add(self, messages: Iterable[Any]) -> None:
        now = time.monotonic()
        for message in messages:
            self._held[id(message)] = _Held(message, now + _lock_span_s(message, self.default_lock_s) / 2)
        if len(self._held) >= self.limit:
            self._room.clear()

    def release(self, messages: Iterable[Any]) -> None:
        """Forget settled messages (settled or given up on)."""
        for message in messages:
            self._held.pop(id(message), None)
        if len(self._held) < self.limit:
            self._room.set()

    @property
    def count(self) -> int:
        return len(self._held)

    @property
    def room(self) -> int:
        return max(0, self.limit - len(self._held))

    async def wait_for_room(self, within_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), within_s)

    def messages(self) -> list[Any]:
        return [held.message for held in self._held.values()]

    def due_for_renewal(self) -> list[_Held]:
        now = time.monotonic()
        return [held for held in self._held.values() if held.renew_at <= now]


async def renew_locks_forever(
    renewer: LockRenewer, held: HeldMessages, *, check_every_s: float = 0.5
) -> None:
    """Renew each held message's lock when half its span has passed; runs until cancelled."""
    while True:
        await asyncio.sleep(check_every_s)
        due = held.due_for_renewal()
        # Chunks go out at once (the settler's control links carry several requests in flight),
        # so renewing thousands of locks takes one round trip, not one per chunk.
        chunks = [due[start : start + RENEW_CHUNK] for start in range(0, len(due), RENEW_CHUNK)]
        await asyncio.gather(*(renew_entries(renewer, chunk, held.default_lock_s) for chunk in chunks))


async def renew_entries(renewer: LockRenewer, entries: list[_Held], default_lock_s: float) -> None:
    """Renew a chunk of entries; a failed one (settled meanwhile, lock lost, broker error) is
    retried shortly while it is still held."""
    try:
        failed = {id(message) for message in await renewer.renew_many([entry.message for entry in entries])}
    except Exception as exc:
        log.debug("lock renewal failed, retrying shortly: %r", exc)
        failed = {id(entry.message) for entry in entries}
    now = time.monotonic()
    for entry in entries:
        if id(entry.message) in failed:
            entry.renew_at = now + RETRY_RENEWAL_S
        else:
            entry.renew_at = now + _lock_span_s(entry.message, default_lock_s) / 2
