"""Reply-batch messages: the replies of a request-batch message's items in as few messages as fit.

`plan_reply_messages` applies the contract's rule (`qscore.contracts.reply_batch.reply_messages`)
to addressed replies; `reply_batch_message` is the message of one reply-batch body. The reply
sender (`qscore.transport.replies.ReplySender.deliver`, used by both runtimes) packs the planned
messages into transfers (each encoded once) as it does single replies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from qscore.contracts import REPLY_BATCH_CONTENT_TYPE, ScoreReply
from qscore.contracts.reply_batch import ReplyMessagePlan, reply_json, reply_messages
from qscore.transport.reply_messages import PreparedReply

if TYPE_CHECKING:
    from qscore.transport.replies import ReplyAddress

# A reply-batch body's limit when a link has not told its max message size: Service Bus
# Standard's 256 KB (Premium allows more); and the room left for the message's properties and
# framing (a quarter of a smaller link's).
DEFAULT_LINK_MAX_BYTES = 256 * 1024
PROPERTY_ROOM_BYTES = 4096


def plan_reply_messages(
    replies: Sequence[tuple[ReplyAddress, ScoreReply]],
    *,
    link_max_bytes: Mapping[str, int],
    claim_threshold_bytes: int | None = None,
) -> list[ReplyMessagePlan]:
    """The reply messages for `replies`: those of one request-batch message that asked for
    reply-batch messages (`ReplyAddress.reply_batch`) and go to one queue and session share
    messages, each body within its queue's link's max message size (`link_max_bytes`, less room
    for the message's properties) and the claim-check threshold (so it always goes inline);
    every other reply goes alone. In the order of each message's first reply."""
    keys: list[Hashable | None] = [
        (address.queue, address.session_id, address.reply_batch) if address.reply_batch else None
        for address, _ in replies
    ]
    if not any(keys):
        return [ReplyMessagePlan([index]) for index in range(len(replies))]
    by_queue: dict[str, list[int]] = defaultdict(list)
    for index, (address, _) in enumerate(replies):
        by_queue[address.queue].append(index)
    plans: list[ReplyMessagePlan] = []
    for queue, indexes in by_queue.items():
        link = link_max_bytes.get(queue, DEFAULT_LINK_MAX_BYTES)
        limit = link - min(PROPERTY_ROOM_BYTES, link // 4)
        if claim_threshold_bytes is not None:
            limit = min(limit, claim_threshold_bytes)

        def entry(position: int, indexes: list[int] = indexes) -> bytes:
            return reply_json(replies[indexes[position]][1])

        queue_keys = [keys[index] for index in indexes]
        for plan in reply_messages(queue_keys, entry_of=entry, max_body_bytes=limit):
            plans.append(ReplyMessagePlan([indexes[position] for position in plan.indexes], plan.body))
    plans.sort(key=lambda plan: plan.indexes[0])
    return plans


def reply_batch_message(
    address: ReplyAddress, body: bytes, *, time_to_live_s: float | None = None
) -> PreparedReply:
    """A reply-batch message of a body already encoded: to `address`'s session, its
    `correlation_id` the request-batch message's id, its trace context `address`'s, always JSON."""
    import uuid

    return PreparedReply(
        correlation_id=str(address.reply_batch),
        session_id=address.session_id,
        body=body,
        content_type=REPLY_BATCH_CONTENT_TYPE,
        application_properties={"traceparent": address.traceparent} if address.traceparent else None,
        time_to_live_s=time_to_live_s,
        message_id=str(uuid.uuid4()),
    )
