"""Items of a request-batch message: each answered on its own, the message settled once.

A request-batch message (docs/contract.md) carries many requests. Each becomes a `MessageItem`
that travels through the batcher, Triton and the reply path like a single-request message;
`ItemSettler` stands in for the `Settler` and counts the items of each message down:

- an item whose request can never be scored (bad input, Triton refused it alone) gets an
  error reply with the code, instead of the dead-letter a single request would get, so its
  batch-mates are answered and the message is not redelivered: the core decides this
  (`qscore.scoring.rejection_disposition(batch_item=True)`), the pipeline and intake ask it;
- an item whose reply the broker refuses for good is recorded; an item that must be retried
  (Triton unreachable, a reply send that may pass) marks the message for redelivery;
- when the last item is settled the message is completed, or abandoned (any item to retry:
  the answered items are answered again on redelivery, which at-least-once allows), or
  dead-lettered `reply_undeliverable` naming the items whose replies were refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qscore.contracts import ContractViolation, ErrorCode
from qscore.scoring import error_reply
from qscore.transport import ReplyAddress, ReplySender, enqueued_at
from workers.middleware import MiddlewareStack
from workers.replying import OutgoingReply, reply_and_settle
from workers.settle import Settler


@dataclass(eq=False, slots=True)
class BatchedMessage:
    """A request-batch message and what has become of its items so far."""

    message: Any
    pending: int
    retry_reason: str | None = None
    refused: list[tuple[str, ContractViolation]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class MessageItem:
    """One item of a request-batch message, in the place of a message on the worker's paths."""

    parent: BatchedMessage
    request_id: str
    address: ReplyAddress
    model: str

    @property
    def message_id(self) -> str:
        return self.request_id


def _split(messages: Sequence[Any]) -> tuple[list[Any], list[MessageItem]]:
    plain = [each for each in messages if not isinstance(each, MessageItem)]
    items = [each for each in messages if isinstance(each, MessageItem)]
    return plain, items


class ItemSettler:
    """A `Settler` that also settles items of request-batch messages (the same methods)."""

    def __init__(
        self, settler: Settler, *, replies: ReplySender, middleware: MiddlewareStack, worker_id: str
    ) -> None:
        self._settler = settler
        self._replies = replies
        self._middleware = middleware
        self._worker_id = worker_id

    @property
    def messages(self) -> Any:
        return self._settler.messages

    async def complete(self, messages: Sequence[Any]) -> None:
        plain, items = _split(messages)
        if plain:
            await self._settler.complete(plain)
        await self._items_done(items)

    async def abandon(self, messages: Sequence[Any], *, reason: str) -> None:
        plain, items = _split(messages)
        if plain:
            await self._settler.abandon(plain, reason=reason)
        for item in items:
            item.parent.retry_reason = item.parent.retry_reason or reason
        await self._items_done(items)

    async def dead_letter(self, message: Any, violation: ContractViolation) -> None:
        """A whole message is dead-lettered; an item is recorded as not answered, and its message
        dead-lettered naming it once the last item is settled. Whether an item is answered is the
        core's decision (`rejection_disposition(batch_item=True)`: always, with an error reply of
        its own), so the one item that arrives here is one whose reply the broker refused."""
        if not isinstance(message, MessageItem):
            await self._settler.dead_letter(message, violation)
            return
        message.parent.refused.append((message.request_id, violation))
        await self._items_done([message])

    async def keep_answered(self, message: Any, violation: ContractViolation) -> None:
        """An answered rejection to keep (a whole message). The core never asks to keep an item
        (`rejection_disposition(batch_item=True)`): that would settle its batch-mates' message."""
        if isinstance(message, MessageItem):
            raise TypeError("an item of a request-batch message is never kept (rejection_disposition)")
        await self._settler.keep_answered(message, violation)

    async def reply_errors(self, failed: Sequence[tuple[MessageItem, ContractViolation]]) -> None:
        """Answer items that can never be scored with an error reply each (then settle them)."""
        now = time.time()
        outgoing = [
            OutgoingReply(
                item,
                item.address,
                error_reply(
                    item.request_id,
                    item.model,
                    violation,
                    received_at=now,
                    enqueued_at=enqueued_at(item.parent.message),
                    scored_by=self._worker_id,
                ),
            )
            for item, violation in failed
        ]
        await reply_and_settle(outgoing, self._replies, self, self._middleware)

    async def abandon_all_held(self, *, reason: str) -> int:
        return await self._settler.abandon_all_held(reason=reason)

    async def _items_done(self, items: Sequence[MessageItem]) -> None:
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
            await self._settler.complete(done)
        for each in retry:
            await self._settler.abandon([each.message], reason=each.retry_reason or "item_retry")
        for each in refused:
            await self._settler.dead_letter(each.message, _refused_items(each.refused))


def _refused_items(refused: list[tuple[str, ContractViolation]]) -> ContractViolation:
    """One record for the items whose replies the broker refused (the others were answered)."""
    ids = ", ".join(request_id for request_id, _ in refused[:10])
    more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
    return ContractViolation(
        ErrorCode.REPLY_UNDELIVERABLE,
        f"the replies to items {ids}{more} were refused (the other items were answered): "
        f"{refused[0][1].description}",
    )
