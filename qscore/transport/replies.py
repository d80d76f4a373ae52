"""Send ScoreReply messages to reply queues, many per AMQP transfer.

A reply carries `correlation_id` = request id and `session_id` = the request's
`reply_to_session_id`, so a producer listening on its own session gets only its replies and
can drop a duplicate (at-least-once delivery: a worker that crashes after sending but before
completing the request sends the reply again on redelivery). With a `traceparent` on its
address, the reply carries it as an application property (W3C trace context), so the
producer's trace shows the reply arriving.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qscore.claimcheck.store import ClaimStoreUnavailable
from qscore.contracts import ScoreReply
from qscore.contracts.reply_batch import ReplyMessagePlan
from qscore.transport.joining import JoinedRequests
from qscore.transport.link_open import attach_link, fast_open_sender
from qscore.transport.reply_batches import DEFAULT_LINK_MAX_BYTES, plan_reply_messages, reply_batch_message
from qscore.transport.reply_messages import (
    BatchPacker,
    PreparedReply,
    outgoing_reply,
    reply_amqp_message,
    reply_message,
)
from qscore.transport.reply_ttl import ReplyLifetime
from qscore.transport.windowing import LinkPool

if TYPE_CHECKING:
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

    from qscore.claimcheck.replies import ReplyClaims


@dataclass(frozen=True)
class ReplyAddress:
    """Where one reply goes: a queue and (for session-enabled reply queues) the producer's session."""

    queue: str
    session_id: str | None = None
    traceparent: str | None = None  # the trace context the reply carries (the worker's span)
    deadline: float | None = None  # the request's deadline (epoch s): it sets the reply's time-to-live
    # The request asked for its reply in the binary form (its `accept` property, docs/contract.md).
    binary_reply: bool = False
    # For an item of a request-batch message that asked for reply-batch messages: that message's
    # id (`qscore.scoring.reply_batch_of`). Its batch-mates' replies to the same queue and session
    # sent in one delivery share reply-batch messages (qscore.contracts.reply_batch).
    reply_batch: str | None = None


@dataclass(frozen=True)
class SendFailure:
    """Why one reply was not sent. `permanent`: the broker refused it for good as addressed
    (queue not found, unauthorized, too large, session required), so sending it again cannot
    help; otherwise it may go through later (connection lost, timeout, busy broker).
    `queue_wide`: the refusal was for the queue, not for this message. `detail`: the broker's words."""

    permanent: bool
    detail: str
    queue_wide: bool = False


class ReplySendError(Exception):
    """`ReplySender.send` could not send every reply; `failures` is per reply (None = sent)."""

    def __init__(self, failures: Sequence[SendFailure | None]) -> None:
        first = next(failure for failure in failures if failure is not None)
        count = sum(failure is not None for failure in failures)
        super().__init__(f"{count} of {len(failures)} replies not sent: {first.detail}")
        self.failures = list(failures)


# AMQP conditions that refuse a queue (every message to it) or one message, for good.
QUEUE_REFUSALS = frozenset({"amqp:not-found", "amqp:unauthorized-access", "com.microsoft:entity-disabled"})
MESSAGE_REFUSALS = frozenset({"amqp:link:message-size-exceeded", "amqp:not-allowed", "amqp:decode-error"})
_CONDITION_IN_TEXT = re.compile(r"Error condition: ([\w:.-]+)\.")
# Azure refuses a token for a missing entity (404) or one the identity may not send to (401/403)
# at authorization ($cbs): the SDK raises ServiceBusAuthenticationError, whose cause's text
# carries the status and the broker's words.
_TOKEN_REFUSAL = re.compile(r"Status code: (401|403|404)\s+Description: (.+)", re.S)


def _token_refusal(error: BaseException) -> str | None:
    """The broker's words when `error` is an authorization refusal of the entity, else None."""
    from azure.servicebus.exceptions import ServiceBusAuthenticationError

    if not isinstance(error, ServiceBusAuthenticationError):
        return None
    cause = error.__cause__ or error.__context__
    found = _TOKEN_REFUSAL.search(str(cause)) if cause is not None else None
    return found.group(2).strip().splitlines()[0] if found else None


def classify_send_error(error: BaseException) -> SendFailure:
    """Permanent (the request's reply can never be delivered as addressed) or transient."""
    from azure.servicebus.exceptions import (
        MessageSizeExceededError,
        MessagingEntityDisabledError,
        MessagingEntityNotFoundError,
        ServiceBusAuthorizationError,
        ServiceBusError,
    )

    from qscore.transport import sdk_hooks

    text = str(error).strip()
    words = text.splitlines()[0] if text else repr(error)
    condition = getattr(error, "_condition", None)  # the SDK keeps the AMQP condition privately
    if isinstance(error, ServiceBusError) and not hasattr(error, "_condition"):
        sdk_hooks.fallback("error.condition")  # declared there; the text below is the slow path
    if not isinstance(condition, str):
        found = _CONDITION_IN_TEXT.search(text)
        condition = found.group(1) if found else None
    queue_errors = (MessagingEntityNotFoundError, MessagingEntityDisabledError, ServiceBusAuthorizationError)
    if isinstance(error, queue_errors) or condition in QUEUE_REFUSALS:
        return SendFailure(permanent=True, detail=words, queue_wide=True)
    refused = _token_refusal(error)
    if refused is not None:
        return SendFailure(permanent=True, detail=refused, queue_wide=True)
    if isinstance(error, MessageSizeExceededError) or condition in MESSAGE_REFUSALS:
        return SendFailure(permanent=True, detail=words)
    return SendFailure(permanent=False, detail=words)


class _QueueRefused(Exception):
    def __init__(self, failure: SendFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


Indexed = list[tuple[int, PreparedReply]]
__all__ = ["ReplyAddress", "ReplySendError", "ReplySender", "SendFailure", "classify_send_error"]
__all__ += ["outgoing_reply", "reply_amqp_message", "reply_message"]  # qscore.transport.reply_messages


log = logging.getLogger(__name__)

# Sender links (connections) per reply queue: sends in flight at once, as the window asks.
MAX_REPLY_LINKS = 8
# A reply's bytes in a transfer beyond its body (properties, annotations): for joining sends.
REPLY_OVERHEAD_BYTES = 256


class ReplySender:
    """Batched reply sends over one ServiceBusClient; SDK senders per reply queue, opened lazily.

    `deliver` reports per reply: in the normal case each queue's replies go out packed into as
    few transfers as the link allows; only when a transfer is refused for good are its replies
    sent one by one, to find the one(s) the broker refuses, so batch-mates are still answered.
    One send at a time on each sender link: the SDK does not guard concurrent sends on one
    sender (frames of two batches interleave, and a failed send's reopen races). But a send takes
    a broker round trip, so concurrent deliveries to one queue each get a link of the queue's
    pool (qscore.transport.windowing.LinkPool), which opens more, up to MAX_REPLY_LINKS, as the
    measured send rate x round trip asks for; queues are sent to at the same time. Deliveries
    that find every link of their queue busy join one send (qscore.transport.joining), up to a
    transfer's worth of bytes, so they wait one round trip together rather than one each.
    """

    def __init__(
        self,
        client: ServiceBusClient,
        *,
        send_timeout_s: float | None = 30.0,
        claims: ReplyClaims | None = None,
        lifetime: ReplyLifetime | None = None,
    ) -> None:
        self._client = client
        self._lifetime = lifetime or ReplyLifetime.from_env()  # each reply's time-to-live
        self._claims = claims  # replies over its threshold go by reference
        self._send_timeout_s = send_timeout_s
        self._senders: dict[str, LinkPool[ServiceBusSender]] = {}
        self._link_max_bytes: dict[str, int] = {}  # per reply queue, once its link told it
        # Deliveries to a queue that find each of its links busy join one send, up to what one
        # transfer holds (qscore.transport.joining).
        self._joined: JoinedRequests[str, Indexed, dict[int, SendFailure], ServiceBusSender] = JoinedRequests(
            lambda queue: self._sender(queue).use(),
            self._send_joined,
            weight=self._joined_weight,
            most=self._joined_most,
        )

    async def send(self, replies: Sequence[tuple[ReplyAddress, ScoreReply]]) -> None:
        """Send all replies; returns once the broker has accepted every one (ReplySendError otherwise)."""
        failures = await self.deliver(replies)
        if any(failure is not None for failure in failures):
            raise ReplySendError(failures)

    async def deliver(self, replies: Sequence[tuple[ReplyAddress, ScoreReply]]) -> list[SendFailure | None]:
        """Send all replies; per reply (same order): None when the broker accepted it, else why not."""
        results: list[SendFailure | None] = [None] * len(replies)
        by_queue: dict[str, Indexed] = defaultdict(list)
        # A reply message is known by its first reply's index; `shared` lists the others of
        # a reply-batch message, whose outcome is theirs too.
        shared: dict[int, list[int]] = {}
        for plan in await self._plans(replies):
            index = plan.indexes[0]
            address, reply = replies[index]
            try:
                if plan.body is None:
                    message = await self._message(address, reply)
                else:
                    message = self._batch_message([replies[each][0] for each in plan.indexes], plan.body)
                    shared[index] = plan.indexes[1:]
            except ClaimStoreUnavailable as exc:  # may pass: the request is redelivered
                results[index] = SendFailure(False, f"reply by reference: {exc}")
                continue
            by_queue[address.queue].append((index, message))
        sends = [self._deliver_to(queue, indexed) for queue, indexed in by_queue.items()]
        outcomes = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
        for outcome in outcomes:
            for index, failure in outcome.items():
                results[index] = failure
                for other in shared.get(index, ()):
                    results[other] = failure
        return results

    async def _plans(self, replies: Sequence[tuple[ReplyAddress, ScoreReply]]) -> list[ReplyMessagePlan]:
        # A reply-batch body fits its link's max message size and stays under the claim-check
        # threshold, so it always goes inline.
        queues = {address.queue for address, _ in replies if address.reply_batch}
        limits = {queue: await self._link_max(queue) for queue in queues}  # known after the first
        threshold = None if self._claims is None else self._claims.threshold_bytes
        return plan_reply_messages(replies, link_max_bytes=limits, claim_threshold_bytes=threshold)

    async def _link_max(self, queue: str) -> int:
        """The max message size of `queue`'s sender link (opened for it now, the first time)."""
        known = self._link_max_bytes.get(queue)
        if known is None:
            try:
                async with self._sender(queue).use() as sender:
                    batch = await sender.create_message_batch()
            except Exception:  # the send that follows reports why (queue not found, ...)
                return DEFAULT_LINK_MAX_BYTES
            known = int(getattr(batch, "max_size_in_bytes", 0) or DEFAULT_LINK_MAX_BYTES)
            # The batch limit is the SDK's; the entity's own max message size may be smaller.
            from qscore.transport import sdk_hooks

            entity_max = getattr(sender, "_max_message_size_on_link", None)
            if isinstance(entity_max, int) and entity_max > 0:
                known = min(known, entity_max)
            else:
                sdk_hooks.fallback("sender.max_message_size")
            self._link_max_bytes[queue] = known
        return known

    def _batch_message(self, addresses: Sequence[ReplyAddress], body: bytes) -> PreparedReply:
        deadlines = [address.deadline for address in addresses]  # the longest-lived reply's
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        return reply_batch_message(addresses[0], body, time_to_live_s=self._lifetime.seconds(deadline))

    async def _message(self, address: ReplyAddress, reply: ScoreReply) -> PreparedReply:
        ttl_s = self._lifetime.seconds(address.deadline)
        if self._claims is None:
            return outgoing_reply(address, reply, time_to_live_s=ttl_s)
        body = reply.model_dump_json(exclude_none=True).encode()  # by reference: JSON (docs/contract.md)
        reference = await self._claims.offload(reply.request_id, body)
        return outgoing_reply(address, reply, reference=reference, time_to_live_s=ttl_s)

    async def _deliver_to(self, queue: str, indexed: Indexed) -> dict[int, SendFailure]:
        try:  # on a link of the queue's, with other deliveries to it waiting meanwhile
            return await self._joined.submit(queue, indexed)
        except Exception as exc:  # no link to send on (the queue's pool closed meanwhile, say)
            failure = classify_send_error(exc)
            return {index: failure for index, _ in indexed}

    async def _send_joined(
        self, queue: str, sender: ServiceBusSender, deliveries: list[Indexed]
    ) -> list[dict[int, SendFailure]]:
        """One send of several deliveries' replies to `queue`; each delivery's failures by its
        own indexes (a transfer refused for good is still sent again one by one, so a reply the
        broker refuses fails alone)."""
        joined: Indexed = []
        owners: list[tuple[int, int]] = []  # per joined index: (delivery, its own index)
        for number, indexed in enumerate(deliveries):
            for index, message in indexed:
                joined.append((len(owners), message))
                owners.append((number, index))
        sent: set[int] = set()
        try:
            failed = await self._send_packed(sender, joined, sent)
        except Exception as exc:  # the link would not open, or the queue refused everything
            failure = exc.failure if isinstance(exc, _QueueRefused) else classify_send_error(exc)
            if failure.permanent:
                await self._forget(queue)  # a queue created later gets a fresh link
            failed = {index: failure for index, _ in joined if index not in sent}
        results: list[dict[int, SendFailure]] = [{} for _ in deliveries]
        for index, failure in failed.items():
            number, own = owners[index]
            results[number][own] = failure
        return results

    def _joined_weight(self, indexed: Indexed) -> int:
        return sum(len(message.body) + REPLY_OVERHEAD_BYTES for _, message in indexed)

    def _joined_most(self, queue: str) -> int:
        return self._link_max_bytes.get(queue, DEFAULT_LINK_MAX_BYTES)

    async def _send_packed(
        self, sender: ServiceBusSender, indexed: Indexed, sent: set[int]
    ) -> dict[int, SendFailure]:
        # Pack as many messages per transfer as the link's max message size allows.
        failed: dict[int, SendFailure] = {}
        batch = await sender.create_message_batch()
        packer = BatchPacker(batch)
        chunk: Indexed = []
        for index, message in indexed:
            if packer.add(batch, message):
                chunk.append((index, message))
                continue
            if chunk:  # this transfer is full: send it and start the next one
                failed.update(await self._send_chunk(sender, batch, chunk, sent))
                batch, chunk = await sender.create_message_batch(), []
                if packer.add(batch, message):
                    chunk.append((index, message))
                    continue
            limit = getattr(batch, "max_size_in_bytes", "?")
            failed[index] = SendFailure(True, f"the reply is larger than the link allows ({limit} bytes)")
        if chunk:
            failed.update(await self._send_chunk(sender, batch, chunk, sent))
        return failed

    async def _send_chunk(
        self, sender: ServiceBusSender, batch: Any, chunk: Indexed, sent: set[int]
    ) -> dict[int, SendFailure]:
        try:
            await sender.send_messages(batch, timeout=self._send_timeout_s)
        except Exception as exc:
            failure = classify_send_error(exc)
        else:
            sent.update(index for index, _ in chunk)
            return {}
        if failure.queue_wide:
            raise _QueueRefused(failure)
        if not failure.permanent or len(chunk) == 1:
            return {index: failure for index, _ in chunk}
        # One message of the transfer was refused for good: send each alone to find which.
        found: dict[int, SendFailure] = {}
        for index, message in chunk:
            try:
                await sender.send_messages(message.amqp(), timeout=self._send_timeout_s)
            except Exception as exc:
                found[index] = classify_send_error(exc)
            else:
                sent.add(index)
        return found

    @property
    def call_s(self) -> float | None:
        """A delivery's measured (smoothed) time on the broker, any wait for a link or for the
        send it joined included; the round trip until deliveries are measured."""
        return self._joined.call_s if self._joined.call_s is not None else self.round_trip_s

    @property
    def round_trip_s(self) -> float | None:
        """The longest measured (smoothed) send round trip of any reply queue; None until measured."""
        measured = [pool.window.round_trip_s for pool in self._senders.values()]
        return max((rtt for rtt in measured if rtt is not None), default=None)

    def _sender(self, queue: str) -> LinkPool[ServiceBusSender]:
        pool = self._senders.get(queue)
        if pool is None:
            pool = LinkPool(
                lambda: fast_open_sender(self._client, queue), ceiling=MAX_REPLY_LINKS, attach=attach_link
            )
            self._senders[queue] = pool
        return pool

    async def open_link(self, queue: str) -> None:
        """Attach a sender link to `queue` now, so the first reply does not wait for it."""
        async with self._sender(queue).use() as sender:
            await sender.__aenter__()

    async def _forget(self, queue: str) -> None:
        pool = self._senders.pop(queue, None)
        if pool is not None:  # a link still sending closes when its send ends
            await pool.close()

    async def close(self) -> None:
        if self._claims is not None:
            await self._claims.close()
        pools, self._senders = dict(self._senders), {}
        for queue, pool in pools.items():
            log.info("reply sends to %s: %s", queue, pool.describe())
            await pool.close()
