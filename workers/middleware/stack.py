"""Calls each middleware's hooks in order; a failing hook is logged and counted, never more.

Only the hooks a middleware overrides are called (a per-message hook nobody overrides costs one
empty loop), so the built-in middleware the worker always carries adds no work per message.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qscore.telemetry.setup import counter
from workers.middleware.base import Middleware, Replied, ScoreBatch, ScoreResult, Settled

if TYPE_CHECKING:
    from workers.held import HeldRequest

log = logging.getLogger(__name__)

HOOKS = (
    "startup",
    "after_receive",
    "after_validate",
    "before_score",
    "after_score",
    "after_reply",
    "after_settle",
    "after_drain",
    "shutdown",
)
# After the first failure of a (middleware, hook) with its traceback, one line per this many.
LOG_EVERY = 1000
# Counted for operators too (docs/operations.md): a failing hook changes no outcome, so nothing
# else would show that an audit trail or an enrichment has stopped working.
FAILURES_METRIC = "qscore.worker.middleware_failures"


def _count_failure(middleware: str, hook: str) -> None:
    instrument = counter(FAILURES_METRIC, unit="{failure}", description="Worker middleware hooks that raised")
    instrument.add(1, {"middleware": middleware, "hook": hook})


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


class MiddlewareStack:
    """The worker's middleware, in order; what the steps call."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self.middleware = tuple(middleware)
        self._hooked = {hook: tuple(m for m in self.middleware if _overrides(m, hook)) for hook in HOOKS}
        self.failures: Counter[tuple[str, str]] = Counter()  # (middleware class, hook) -> count

    def _failed(self, middleware: Middleware, hook: str) -> None:
        key = (type(middleware).__name__, hook)
        self.failures[key] += 1
        _count_failure(*key)
        count = self.failures[key]
        if count == 1:
            log.exception("middleware %s failed in %s (scoring goes on)", *key)
        elif count % LOG_EVERY == 0:
            log.warning("middleware %s has failed %d times in %s", key[0], count, hook)

    async def _each(self, hook: str, *args: Any) -> None:
        for middleware in self._hooked[hook]:
            try:
                await getattr(middleware, hook)(*args)
            except Exception:
                self._failed(middleware, hook)

    async def startup(self) -> None:
        """Every middleware's `startup`, in order; the first failure propagates (no worker starts)."""
        for middleware in self._hooked["startup"]:
            await middleware.startup()

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        if self._hooked["after_receive"]:
            await self._each("after_receive", queue, messages)

    async def after_validate(self, request: HeldRequest) -> None:
        if self._hooked["after_validate"]:
            await self._each("after_validate", request)

    async def before_score(self, batch: ScoreBatch) -> ScoreBatch:
        """The batch to score: as each `before_score` returned it. A hook that raises, or returns
        a different number of requests, is logged and left out: the batch goes on without it."""
        for middleware in self._hooked["before_score"]:
            try:
                changed = await middleware.before_score(batch)
                if changed is None:
                    continue
                if len(changed) != len(batch.requests):
                    raise ValueError(
                        f"before_score returned {len(changed)} requests for {len(batch.requests)}"
                    )
            except Exception:
                self._failed(middleware, "before_score")
                continue
            batch = dataclasses.replace(batch, requests=tuple(changed))
        return batch

    async def after_score(self, result: ScoreResult) -> None:
        await self._each("after_score", result)

    async def after_reply(self, replied: Replied) -> None:
        await self._each("after_reply", replied)

    async def after_settle(self, settled: Settled) -> None:
        if settled.messages:  # (abandoning an empty held set at drain settles nothing)
            await self._each("after_settle", settled)

    async def after_drain(self) -> None:
        await self._each("after_drain")

    async def shutdown(self) -> None:
        await self._each("shutdown")
