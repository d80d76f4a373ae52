"""Items of a request-batch message: each answered on its own, the message settled once.

A request-batch message (docs/contract.md) carries many requests. Each becomes a `MessageItem`
that travels through the batcher, Triton and the reply path like a single-request message;
the worker's one settler (`workers.settle.Settler`) takes items as it takes messages and counts
the items of each message down:

- an item whose request can never be scored (bad input, Triton refused it alone) gets an
  error reply with the code, instead of the dead-letter a single request would get, so its
  batch-mates are answered and the message is not redelivered: the core decides this
  (`qscore.scoring.rejection_disposition(batch_item=True)`), the pipeline and intake ask it
  (intake answers such items, `Intake._reply_item_errors`);
- an item whose reply the broker refuses for good is recorded; an item that must be retried
  (Triton unreachable, a reply send that may pass) marks the message for redelivery;
- when the last item is settled the message is completed, or abandoned (any item to retry:
  the answered items are answered again on redelivery, which at-least-once allows), or
  dead-lettered `reply_undeliverable` naming the items whose replies were refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qscore.contracts import ContractViolation, ErrorCode
from qscore.transport import ReplyAddress


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


def split_items(messages: Sequence[Any]) -> tuple[list[Any], list[MessageItem]]:
    """Whole messages, and items of request-batch messages."""
    plain = [each for each in messages if not isinstance(each, MessageItem)]
    items = [each for each in messages if isinstance(each, MessageItem)]
    return plain, items


def refused_items(refused: list[tuple[str, ContractViolation]]) -> ContractViolation:
    """One record for the items whose replies the broker refused (the others were answered)."""
    ids = ", ".join(request_id for request_id, _ in refused[:10])
    more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
    return ContractViolation(
        ErrorCode.REPLY_UNDELIVERABLE,
        f"the replies to items {ids}{more} were refused (the other items were answered): "
        f"{refused[0][1].description}",
    )
