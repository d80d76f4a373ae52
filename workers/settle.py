"""Completing, abandoning and dead-lettering messages, and forgetting them once settled.

Completion and abandonment go out many messages per broker request
(qscore.transport.MessageSettler); a failure on one message (lock lost, already settled)
never stops the rest: the broker redelivers such a message, which at worst produces a
duplicate reply.

The same methods settle an item of a request-batch message (`workers.batch_items.MessageItem`):
its message is settled once, when its last item is (`workers.batch_items` says how), so the
paths that settle a request need not tell the two apart and no wrapper stands between them and
this settler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from qscore.contracts import ContractViolation
from qscore.transport.settlement import MessageSettler
from workers.batch_items import BatchedMessage, MessageItem, refused_items, split_items
from workers.dead_letter import dead_letter
from workers.job import ABANDONED, COMPLETED, DEAD_LETTERED
from workers.locks import HeldMessages
from workers.middleware import MiddlewareStack, Settled


class Settler:
    """Settles messages of one receiver (whole ones, and items of request-batch messages),
    keeps the held-messages set in step, and tells the middleware (`after_settle`) what became
    of each message, even when the broker call failed."""

    def __init__(
        self,
        settler: MessageSettler,
        held: HeldMessages,
        middleware: MiddlewareStack,
        *,
        on_settled: Callable[[str, int], None] | None = None,
        after_settled: Callable[[Sequence[Any], str], Awaitable[None]] | None = None,
    ) -> None:
        self.messages = settler
        self._held = held
        self._middleware = middleware
        # Told (outcome, count) after each settlement: throughput metering (workers/prefetch.py).
        self._on_settled = on_settled
        # Awaited with (messages, outcome) after a settlement: claim-check blobs are deleted
        # once a request is completed (workers/claims.py).
        self._after_settled = after_settled
        self.failures = 0

    def _settled(self, outcome: str, count: int) -> None:
        if self._on_settled is not None and count:
            self._on_settled(outcome, count)

    async def _after(self, messages: Sequence[Any], outcome: str) -> None:
        if self._after_settled is not None and messages:
            await self._after_settled(messages, outcome)

    async def complete(self, messages: Sequence[Any]) -> None:
        plain, items = split_items(messages)
        if plain:
            await self._complete(plain)
        await self._items_done(items)

    async def abandon(self, messages: Sequence[Any], *, reason: str) -> None:
        """Put messages back on the queue now (their delivery count goes up); an item marks its
        message for redelivery once its last item is settled."""
        plain, items = split_items(messages)
        if plain:
            await self._abandon(plain, reason=reason)
        for item in items:
            item.parent.retry_reason = item.parent.retry_reason or reason
        await self._items_done(items)

    async def dead_letter(self, message: Any, violation: ContractViolation) -> None:
        """A whole message is dead-lettered; an item is recorded as not answered, and its message
        dead-lettered naming it once the last item is settled. Whether an item is answered is the
        core's decision (`rejection_disposition(batch_item=True)`: always, with an error reply of
        its own), so the one item that arrives here is one whose reply the broker refused."""
        if isinstance(message, MessageItem):
            message.parent.refused.append((message.request_id, violation))
            await self._items_done([message])
            return
        await self._dead_letter(message, violation)

    async def keep_answered(self, message: Any, violation: ContractViolation) -> None:
        """A rejection already answered with an error reply, kept on the dead-letter queue with
        its code (QSCORE_KEEP_ANSWERED_REJECTIONS) instead of completed. The core never asks to
        keep an item (`rejection_disposition(batch_item=True)`): that would settle its
        batch-mates' message."""
        if isinstance(message, MessageItem):
            raise TypeError("an item of a request-batch message is never kept (rejection_disposition)")
        await self._dead_letter(message, violation, answered=True)

    async def abandon_all_held(self, *, reason: str) -> int:
        """Abandon whatever is still held (drain ran out of time); returns how many."""
        messages = self._held.messages()
        await self._abandon(messages, reason=reason)
        return len(messages)

    async def _items_done(self, items: Sequence[MessageItem]) -> None:
        """Count the items down; settle each message whose last item this was: completed,
        abandoned (an item to retry) or dead-lettered naming the items whose replies were refused."""
        finished: list[BatchedMessage] = []
        for item in items:
            item.parent.pending -= 1
            if item.parent.pending == 0:
                finished.append(item.parent)
        if not finished:
            return
        retry = [each for each in finished if each.retry_reason]
        refused = [each for each in finished if not each.retry_reason and each.refused]
        done = [each.message for each in finished if not each.retry_reason and not each.refused]
        if done:
            await self._complete(done)
        for each in retry:
            await self._abandon([each.message], reason=each.retry_reason or "item_retry")
        for each in refused:
            await self._dead_letter(each.message, refused_items(each.refused))

    async def _complete(self, messages: Sequence[Any]) -> None:
        refused = len(messages)
        try:
            refused = len(await self.messages.complete(messages))
            self.failures += refused
        finally:
            self._held.release(messages)
            self._settled(COMPLETED, len(messages))
            await self._middleware.after_settle(Settled(tuple(messages), COMPLETED, refused=refused))
        await self._after(messages, COMPLETED)

    async def _abandon(self, messages: Sequence[Any], *, reason: str) -> None:
        refused = len(messages)
        try:
            refused = len(await self.messages.abandon(messages))
            self.failures += refused
        finally:
            self._held.release(messages)
            self._settled(ABANDONED, len(messages))
            settled = Settled(tuple(messages), ABANDONED, reason=reason, refused=refused)
            await self._middleware.after_settle(settled)
        await self._after(messages, ABANDONED)

    async def _dead_letter(
        self, message: Any, violation: ContractViolation, *, answered: bool = False
    ) -> None:
        refused = 1
        try:
            if await dead_letter(self.messages.receiver, message, violation):
                refused = 0
            else:
                self.failures += 1
        finally:
            self._held.release([message])
            self._settled(DEAD_LETTERED, 1)
            code, description = str(violation.code), violation.description
            settled = Settled(
                (message,),
                DEAD_LETTERED,
                reason=code,
                description=description,
                refused=refused,
                answered=answered,
            )
            await self._middleware.after_settle(settled)
        await self._after([message], DEAD_LETTERED)
