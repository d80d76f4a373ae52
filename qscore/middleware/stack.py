"""Calls each middleware's hooks; a failing hook is logged and counted, never more.

`startup` and the `before_*` hooks run in the stack's order, the `after_*` hooks and `shutdown` in
reverse (as dramatiq's), so the first middleware wraps the others. Only the hooks a middleware
overrides are called (a per-message hook nobody overrides costs one empty loop), so the
built-in middleware a runtime always carries adds no work per message.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from qscore.middleware.base import Middleware, Placement, Replied, ScoreBatch, ScoreResult, Settled
from qscore.telemetry.setup import counter

log = logging.getLogger(__name__)

HOOKS = (
    "startup",
    "after_receive",
    "after_validate",
    "before_score",
    "after_score",
    "before_reply",
    "after_reply",
    "after_settle",
    "after_drain",
    "shutdown",
)
# Run in the stack's order; every other hook runs in reverse.
IN_ORDER = frozenset({"startup", "before_score", "before_reply"})
# After the first failure of a (middleware, hook) with its traceback, one line per this many.
LOG_EVERY = 1000
# Counted for operators too (docs/operations.md): a failing hook changes no outcome, so nothing
# else would show that an audit trail or an enrichment has stopped working.
FAILURES_METRIC = "qscore.worker.middleware_failures"  # both runtimes (the name predates the Functions app)


def _count_failure(middleware: str, hook: str) -> None:
    instrument = counter(FAILURES_METRIC, unit="{failure}", description="Middleware hooks that raised")
    instrument.add(1, {"middleware": middleware, "hook": hook})


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


def _is(middleware: Middleware, placement: Placement) -> bool:
    if isinstance(placement, str):
        return type(middleware).__name__ == placement or type(middleware).__qualname__ == placement
    return placement is not None and isinstance(middleware, placement)


def placed(
    stack: Sequence[Middleware], middleware: Middleware, *, before: Placement = None, after: Placement = None
) -> list[Middleware]:
    """`stack` with `middleware` added: just before the first middleware `before` names, just
    after the last one `after` names (a class, or a class name), else at the end. Defaults to
    the middleware's own `place_before`/`place_after`. A placement naming nothing in the stack
    is a ValueError, as is one that asks for both."""
    before = before if before is not None else middleware.place_before
    after = after if after is not None else middleware.place_after
    if before is not None and after is not None:
        raise ValueError(f"{type(middleware).__name__}: place it before or after another, not both")
    result = list(stack)
    if before is None and after is None:
        return [*result, middleware]
    placement = before if before is not None else after
    found = [index for index, each in enumerate(result) if _is(each, placement)]
    if not found:
        name = placement if isinstance(placement, str) else getattr(placement, "__name__", placement)
        raise ValueError(f"{type(middleware).__name__}: no middleware {name} to place it by")
    index = found[0] if before is not None else found[-1] + 1
    return [*result[:index], middleware, *result[index:]]


@dataclasses.dataclass(frozen=True, slots=True)
class _ReplyTo:
    """A reply to send with the address an earlier `before_reply` gave it (what the next sees)."""

    outgoing: Any
    address: Any

    @property
    def message(self) -> Any:
        return self.outgoing.message

    @property
    def reply(self) -> Any:
        return self.outgoing.reply


class MiddlewareStack:
    """A runtime's middleware, in order; what its steps call. Each middleware is added in turn
    (`placed`): at the end, or where its `place_before`/`place_after` puts it."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        ordered: list[Middleware] = []
        for each in middleware:
            ordered = placed(ordered, each)
        self.middleware = tuple(ordered)
        self._hooked = {hook: self._with(hook) for hook in HOOKS}
        self.failures: Counter[tuple[str, str]] = Counter()  # (middleware class, hook) -> count

    def _with(self, hook: str) -> tuple[Middleware, ...]:
        hooked = tuple(m for m in self.middleware if _overrides(m, hook))
        return hooked if hook in IN_ORDER else hooked[::-1]

    def add(self, middleware: Middleware, *, before: Placement = None, after: Placement = None) -> None:
        """Add one more, at the end or `before=`/`after=` another (a class or a class name)."""
        self.middleware = tuple(placed(self.middleware, middleware, before=before, after=after))
        self._hooked = {hook: self._with(hook) for hook in HOOKS}

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
        """Every middleware's `startup`, in order; the first failure propagates (nothing starts)."""
        for middleware in self._hooked["startup"]:
            await middleware.startup()

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        if self._hooked["after_receive"]:
            await self._each("after_receive", queue, messages)

    async def after_validate(self, request: Any) -> None:
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

    async def before_reply(self, replying: Sequence[Any]) -> list[Any] | None:
        """The addresses to send the replies to, as each `before_reply` returned them; None when
        no middleware changed them. A hook that raises, or returns a different number of
        addresses, is logged and left out: the replies go on without it."""
        addresses: list[Any] | None = None
        for middleware in self._hooked["before_reply"]:
            try:
                changed = await middleware.before_reply(replying)
                if changed is None:
                    continue
                if len(changed) != len(replying):
                    raise ValueError(f"before_reply returned {len(changed)} addresses for {len(replying)}")
            except Exception:
                self._failed(middleware, "before_reply")
                continue
            addresses = list(changed)
            replying = [_ReplyTo(each, address) for each, address in zip(replying, addresses, strict=True)]
        return addresses

    async def after_reply(self, replied: Replied) -> None:
        await self._each("after_reply", replied)

    async def after_settle(self, settled: Settled) -> None:
        if settled.messages:  # (abandoning an empty held set at drain settles nothing)
            await self._each("after_settle", settled)

    async def after_drain(self) -> None:
        await self._each("after_drain")

    async def shutdown(self) -> None:
        await self._each("shutdown")
