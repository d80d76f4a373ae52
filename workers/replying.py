"""Send a batch's replies, then settle each request by what became of ITS reply.

- sent -> completed (after the send: at-least-once, see workers/pipeline.py), or dead-lettered
  with its code when the reply answered a rejection the operator keeps (`keep`,
  QSCORE_KEEP_ANSWERED_REJECTIONS);
- refused for good (queue not found, unauthorized, too large, session required) ->
  dead-lettered `reply_undeliverable` with the broker's words: redelivery cannot help;
- failed in a way that may pass (connection lost, timeout) -> abandoned, redelivered later.

So one request whose reply cannot be delivered never takes its batch-mates down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from qscore.contracts import ContractViolation, ScoreReply
from qscore.scoring import ScoredItem, undeliverable
from qscore.transport import ReplyAddress, ReplySender, SendFailure
from workers.middleware.base import Replied

if TYPE_CHECKING:
    from workers.held import HeldRequest
    from workers.middleware.stack import MiddlewareStack

log = logging.getLogger(__name__)


class SettlesMessages(Protocol):
    """`workers.settle.Settler` (whole messages and items of request-batch messages alike)."""

    async def complete(self, messages: Sequence[Any]) -> None: ...

    async def abandon(self, messages: Sequence[Any], *, reason: str) -> None: ...

    async def dead_letter(self, message: Any, violation: ContractViolation) -> None: ...

    async def keep_answered(self, message: Any, violation: ContractViolation) -> None: ...


@dataclass(frozen=True, slots=True)
class OutgoingReply:
    """One request's reply, with the message to settle; for a scored request also the request
    and its scored item (the interaction log and shadow scoring read them, after the reply)."""

    message: Any
    address: ReplyAddress
    reply: ScoreReply
    request: HeldRequest | None = None
    scored: ScoredItem | None = None
    # An answered rejection to keep: once the reply is sent the message is dead-lettered with
    # this reason instead of completed (a message is settled once).
    keep: ContractViolation | None = None


async def reply_and_settle(
    outgoing: Sequence[OutgoingReply],
    replies: ReplySender,
    settler: SettlesMessages,
    middleware: MiddlewareStack,
) -> list[int]:
    """Send every reply (batched) where the middleware's `before_reply` leaves it, settle each
    message by its own outcome, then tell the middleware (`after_reply`); returns the indexes of
    the replies that were sent."""
    addresses = await middleware.before_reply(outgoing)  # None: as the replies carry them
    sending = [(each.address, each.reply) for each in outgoing]
    if addresses is not None:
        sending = [(address, reply) for address, (_, reply) in zip(addresses, sending, strict=True)]
    try:
        failures = await replies.deliver(sending)
    except Exception as exc:  # deliver reports per reply; anything else may pass: send them again later
        failures = [SendFailure(permanent=False, detail=repr(exc))] * len(outgoing)
    sent = [index for index, failure in enumerate(failures) if failure is None]
    retry = [outgoing[index] for index, failure in enumerate(failures) if failure and not failure.permanent]
    answered = [outgoing[index] for index in sent if outgoing[index].keep is None]
    if answered:
        await settler.complete([each.message for each in answered])
    for index in sent:
        kept = outgoing[index].keep
        if kept is not None:
            await settler.keep_answered(outgoing[index].message, kept)
    for index, failure in enumerate(failures):
        if failure is not None and failure.permanent:
            each = outgoing[index]
            await settler.dead_letter(each.message, undeliverable(each.address, failure.detail))
    if retry:
        reason = next(failure.detail for failure in failures if failure and not failure.permanent)
        log.warning("could not send %d replies, abandoning them for redelivery: %s", len(retry), reason)
        await settler.abandon([each.message for each in retry], reason="reply_send_failed")
    unsent = tuple(outgoing[index] for index, failure in enumerate(failures) if failure is not None)
    await middleware.after_reply(Replied(tuple(outgoing[index] for index in sent), unsent))
    return sent
