"""The worker's Settler with items of request-batch messages (unit, fakes for the broker): a
request-batch message is settled once, when its last item is, by what became of all its
items. The real-bus test is tests/test_worker_request_batch.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from qscore.contracts import ContractViolation, ErrorCode
from qscore.middleware import Middleware, MiddlewareStack, Settled
from qscore.transport import ReplyAddress
from qscore.transport.settle_outcomes import ABANDONED, COMPLETED, DEAD_LETTERED
from qscore.transport.settlement import MessageSettler
from workers.batch_items import BatchedMessage, MessageItem
from workers.locks import HeldMessages
from workers.settle import Settler


class _Broker:
    """A MessageSettler and its receiver that take every settlement."""

    def __init__(self) -> None:
        self.receiver = self

    async def complete(self, messages: Sequence[Any]) -> list[Any]:
        return []

    async def abandon(self, messages: Sequence[Any]) -> list[Any]:
        return []

    async def dead_letter_message(
        self, message: Any, reason: str | None = None, error_description: str | None = None
    ) -> None:
        return None


class _Settled(Middleware):
    """What was settled, and how, as the middleware is told (`after_settle`)."""

    KIND = {COMPLETED: "complete", ABANDONED: "abandon", DEAD_LETTERED: "dead_letter"}

    def __init__(self) -> None:
        self.log: list[tuple[str, Any, str]] = []

    async def after_settle(self, settled: Settled) -> None:
        kind = self.KIND[settled.outcome]
        words = f"{settled.reason}: {settled.description}" if kind == "dead_letter" else settled.reason or ""
        self.log += [(kind, message, words) for message in settled.messages]


def _items(count: int) -> tuple[BatchedMessage, list[MessageItem]]:
    parent = BatchedMessage("the-message", pending=count)
    address = ReplyAddress("scoring-replies", "s")
    return parent, [MessageItem(parent, f"r{index}", address, "digits") for index in range(count)]


def _settler(settled: _Settled) -> Settler:
    return Settler(cast(MessageSettler, _Broker()), HeldMessages(limit=10), MiddlewareStack([settled]))


async def test_the_message_is_completed_once_when_its_last_item_is() -> None:
    settled = _Settled()
    settler = _settler(settled)
    _, items = _items(3)
    await settler.complete(items[:2])
    assert settled.log == []
    await settler.complete([items[2], "plain"])
    assert settled.log == [("complete", "plain", ""), ("complete", "the-message", "")]


async def test_an_item_to_retry_abandons_the_message_after_the_others() -> None:
    settled = _Settled()
    settler = _settler(settled)
    _, items = _items(3)
    await settler.abandon([items[0]], reason="inference_unavailable")
    await settler.complete(items[1:])
    assert settled.log == [("abandon", "the-message", "inference_unavailable")]


async def test_refused_replies_dead_letter_the_message_naming_the_items() -> None:
    settled = _Settled()
    settler = _settler(settled)
    _, items = _items(3)
    refused = ContractViolation(ErrorCode.REPLY_UNDELIVERABLE, "queue not found")
    await settler.dead_letter(items[1], refused)
    await settler.complete([items[0], items[2]])
    ((kind, message, words),) = settled.log
    assert (kind, message) == ("dead_letter", "the-message")
    assert words.startswith("reply_undeliverable") and "r1" in words and "queue not found" in words


async def test_an_item_is_never_kept_alone() -> None:
    """Whether an item is answered is the core's decision (rejection_disposition(batch_item=True):
    always); the settler does not decide it again, and refuses to keep an item on its own."""
    settled = _Settled()
    settler = _settler(settled)
    _, items = _items(2)
    with pytest.raises(TypeError):
        await settler.keep_answered(items[0], ContractViolation(ErrorCode.SCHEMA_VIOLATION, "bad"))
    assert settled.log == []
