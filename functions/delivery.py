"""The last steps of an orchestration: send every reply, record what cannot be answered.

The replies come from the documents the inference activities (and validation, for rejected
requests) stored; the history carries only their references, and they are read all at once.
Replies go out to every reply queue at once (qscore.transport.ReplySender: a pool of sender
links per queue, sized by the measured rate x round trip), each queue on its own, so a queue
that refuses them (not found, not authorized, a message too large, a session queue without a
session id) costs only the requests that named it: they are recorded on the failures queue as
`reply_undeliverable` with the broker's words, and every other request still gets its reply. A
transient failure is retried here, per queue, with the app's retry policy; what still fails is
recorded the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from functions.documents import decode_replies
from functions.middleware import HandledReply, QueuedReply, RecordedRequest, recorded, replied
from functions.payloads import Envelope, GroupOutcome, InboundMessage, Rejection, SendSummary
from functions.retry import policy_delay_s
from functions.runtime import ScoringRuntime
from functions.steps import Addressed, error_for, finish_timings, load_members, reply_queue_of
from qscore.contracts import ContractViolation, ErrorCode, ReplyStatus, ScoreReply, accepts_binary_reply
from qscore.scoring import reply_batch_of, undeliverable
from qscore.transport import ReplyAddress
from qscore.transport.failures import FailureRecord

log = logging.getLogger("qscore.functions")

REPLY_UNDELIVERABLE = ErrorCode.REPLY_UNDELIVERABLE.value
INFERENCE_FAILED = ErrorCode.INFERENCE_FAILED.value
ReplyAddressed = tuple[ReplyAddress, ScoreReply]


async def _stored_replies(ref: str, runtime: ScoringRuntime) -> list[Addressed]:
    return [(each.envelope, each.reply) for each in decode_replies(await runtime.payloads.get(ref))]


async def _failed_group(
    outcome: GroupOutcome, runtime: ScoringRuntime
) -> tuple[list[Addressed], list[Rejection]]:
    """A group whose inference failed after its retries: its queue requests are recorded
    `inference_failed` (as the worker's would be dead-lettered), its HTTP requests get the error."""
    why = outcome.failure or "unknown error"
    violation = ContractViolation(ErrorCode.INFERENCE_FAILED, f"inference failed after retries: {why}")
    replies: list[Addressed] = []
    unanswered: list[Rejection] = []
    for member in await load_members(outcome.group, runtime.payloads):
        envelope, model = member.envelope, outcome.group.model
        if envelope.origin == "queue":
            description = f"inference failed after its retries: {why}"
            unanswered.append(
                Rejection(
                    request_id=envelope.message_id,
                    model=model,
                    code=INFERENCE_FAILED,
                    description=description,
                )
            )
        else:
            replies.append((envelope, error_for(envelope, model, violation, runtime)))
    return replies, unanswered


async def _gather(
    outcomes: list[GroupOutcome], rejected_replies: str | None, runtime: ScoringRuntime
) -> tuple[list[Addressed], list[Rejection]]:
    """Every reply to send (from the stored documents), and the requests to record instead.
    The documents are read all at once: one storage round trip, not one per group."""

    async def load(outcome: GroupOutcome) -> tuple[list[Addressed], list[Rejection]]:
        if outcome.replies is not None:
            return await _stored_replies(outcome.replies, runtime), []
        return await _failed_group(outcome, runtime)

    async def load_rejected() -> list[Addressed]:
        return [] if rejected_replies is None else await _stored_replies(rejected_replies, runtime)

    loaded, rejected = await asyncio.gather(
        asyncio.gather(*(load(outcome) for outcome in outcomes)), load_rejected()
    )
    replies: list[Addressed] = []
    unanswered: list[Rejection] = []
    for outcome, (group_replies, failed) in zip(outcomes, loaded, strict=True):
        unanswered.extend(outcome.dead_letters)
        replies.extend(group_replies)
        unanswered.extend(failed)
    replies.extend(rejected)
    # A kept rejection (QSCORE_KEEP_ANSWERED_REJECTIONS) is answered as well as recorded.
    recorded = {rejection.request_id for rejection in unanswered if not rejection.answered}
    return [(e, r) for e, r in replies if r.request_id not in recorded], unanswered


async def send_to_queues(replies: list[ReplyAddressed], runtime: ScoringRuntime) -> dict[str, str]:
    """Send the replies; retry the ones that failed for a transient reason with the retry policy.
    {request id: why} for the ones not sent: refused for good, or still failing after the retries."""
    policy = runtime.settings.retry
    pending, failed = list(replies), {}
    for attempt in range(1, policy.max_attempts + 1):
        failures = await runtime.replies.deliver(pending)
        retry: list[ReplyAddressed] = []
        for (address, reply), failure in zip(pending, failures, strict=True):
            if failure is None:
                continue
            if failure.permanent:
                failed[reply.request_id] = undeliverable(address, failure.detail).description
            elif attempt == policy.max_attempts:
                words = f"not accepted after {attempt} attempts: {failure.detail}"
                failed[reply.request_id] = undeliverable(address, words).description
            else:
                retry.append((address, reply))
        if not retry:
            break
        pending = retry
        await asyncio.sleep(policy_delay_s(policy, attempt))
    return failed


async def send_replies(
    outcomes: list[GroupOutcome], rejected_replies: str | None, runtime: ScoringRuntime
) -> SendSummary:
    """Queue requests get their reply on their reply queue and session (batched sends);
    HTTP requests get theirs in the orchestration output."""
    replies, unanswered = await _gather(outcomes, rejected_replies, runtime)
    summary = SendSummary()
    queued: list[tuple[Envelope, str, ScoreReply]] = []
    for message, reply in replies:
        reply = finish_timings(reply, message)
        queue = reply_queue_of(message)
        if queue is None:
            summary.http_replies[reply.request_id] = reply.model_dump(mode="json", exclude_none=True)
        else:
            queued.append((message, queue, reply))
    outgoing = [
        QueuedReply(
            message,
            reply,
            ReplyAddress(
                queue,
                message.reply_to_session_id,
                message.traceparent,
                message.deadline,
                binary_reply=accepts_binary_reply(message.accept),
                # The core's rule: a request-batch message's items share reply-batch messages.
                reply_batch=reply_batch_of(message.item_of, message.accept),
            ),
        )
        for message, queue, reply in queued
    ]
    # The reply spans are the tracing middleware's (functions/telemetry.py ReplySpans): its
    # before_reply opens them and gives each reply its span's traceparent, as the worker's does.
    addresses = await runtime.stack().before_reply(outgoing) if outgoing else None
    to_queue: list[ReplyAddressed] = [
        (each.address if addresses is None else addresses[index], each.reply)
        for index, each in enumerate(outgoing)
    ]
    failed = await send_to_queues(to_queue, runtime) if to_queue else {}
    sent = [reply for _, reply in replies if reply.request_id not in failed]
    summary.sent = len(to_queue) - len(failed)
    summary.ok = sum(reply.status == ReplyStatus.OK for reply in sent)
    summary.errors = sum(reply.status == ReplyStatus.ERROR for reply in sent)
    models = {reply.request_id: reply.model for _, reply in replies}
    summary.unanswered = unanswered + [
        Rejection(request_id=i, model=models.get(i, ""), code=REPLY_UNDELIVERABLE, description=why)
        for i, why in failed.items()
    ]
    # The metrics middleware counts the sent replies (after_reply), as in the worker; the
    # tracing middleware ends each reply span with its outcome (replied, reply_undeliverable).
    # The interaction log keeps every outcome: ok replies were logged with their scores
    # (functions/inference.py), error replies by its middleware here, failure records in
    # record_failures (qscore/middleware/interactions.py).
    handled = [HandledReply(message, reply) for message, reply in replies]
    await replied(
        runtime.stack(),
        [each for each in handled if each.reply.request_id not in failed],
        [each for each in handled if each.reply.request_id in failed],
    )
    return summary


def failure_records(
    instance_id: str, messages: Sequence[InboundMessage], rejected: Sequence[Rejection]
) -> list[FailureRecord]:
    """Each rejected request as a failure record: its original body, reason and reply address."""
    by_id = {message.message_id: message for message in messages}
    records = []
    for rejection in rejected:
        message = by_id.get(rejection.request_id)
        records.append(
            FailureRecord(
                request_id=rejection.request_id,
                body=message.body_bytes() if message is not None else b"",
                reason=rejection.code,
                description=rejection.description,
                reply_to=message.reply_to if message is not None else None,
                reply_to_session_id=message.reply_to_session_id if message is not None else None,
                source=f"functions:{instance_id}",
                content_type=message.content_type if message is not None else None,
            )
        )
    return records


async def record_failures(
    instance_id: str, messages: Sequence[InboundMessage], rejected: list[Rejection], runtime: ScoringRuntime
) -> int:
    records = failure_records(instance_id, messages, rejected)
    recorded = await runtime.failures.record(records)
    for rejection in rejected:  # counted by the metrics middleware (after_settle, dead_lettered)
        log.warning("request stored as dead letter: %s", rejection.code)
    await _settled(runtime, messages, rejected, records)
    return recorded


async def _settled(
    runtime: ScoringRuntime,
    messages: Sequence[InboundMessage],
    rejected: list[Rejection],
    records: list[FailureRecord],
) -> None:
    """The middleware's `after_settle(dead_lettered)`, the interaction log's outcomes among them
    (a kept rejection's was logged as its error reply). A message without an id has none there,
    as in the worker."""
    without_id = {m.message_id for m in messages if not m.has_message_id}
    await recorded(
        runtime.stack(),
        [
            (
                RecordedRequest(None if r.request_id in without_id else r.request_id, r.model, record.body),
                r.code,
                r.description,
                r.answered,
            )
            for r, record in zip(rejected, records, strict=True)
        ],
    )


def unanswered_after_failed_send(
    messages: Sequence[InboundMessage], recorded: Sequence[Rejection], failure: str
) -> list[Rejection]:
    """The reply activity failed for good: every queue request not recorded otherwise."""
    already = {rejection.request_id for rejection in recorded}
    description = f"the reply activity failed after its retries, so no reply was confirmed: {failure}"
    return [
        Rejection(request_id=m.message_id, model="", code=REPLY_UNDELIVERABLE, description=description)
        for m in dict((m.message_id, m) for m in messages).values()
        if m.origin == "queue" and m.message_id not in already
    ]
