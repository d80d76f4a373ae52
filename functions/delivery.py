"""The last steps of an orchestration: send every reply, record what cannot be answered.

Replies go out one reply queue at a time, so a queue that refuses them (not found, not
authorized, a message too large, a session queue without a session id) costs only the requests
that named it: they are recorded on the failures queue as `reply_undeliverable` with the
broker's words, and every other request still gets its reply. A transient failure is retried
here, per queue, with the app's retry policy; what still fails is recorded the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Sequence

from functions.payload_store import unpack
from functions.payloads import GroupOutcome, InboundMessage, Rejection, SendSummary
from functions.retry import policy_delay_s
from functions.runtime import ScoringRuntime
from functions.steps import finish_timings
from functions.telemetry import finish_reply_spans, record_dead_letters, record_replies, start_reply_spans
from qscore.contracts import ContractViolation, ErrorCode, ReplyStatus, ScoreReply
from qscore.scoring import error_reply
from qscore.telemetry import batch_span
from qscore.transport import ReplyAddress
from qscore.transport.failures import FailureRecord

REPLY_UNDELIVERABLE = "reply_undeliverable"
Addressed = tuple[ReplyAddress, ScoreReply]


async def _outcome_replies(outcome: GroupOutcome, runtime: ScoringRuntime) -> list[ScoreReply]:
    if outcome.replies is not None:
        document = await unpack(outcome.replies, runtime.payloads)
        return [ScoreReply.model_validate(each) for each in _json_list(document)]
    violation = ContractViolation(
        ErrorCode.INFERENCE_FAILED, f"inference failed after retries: {outcome.failure or 'unknown error'}"
    )
    return [
        error_reply(request_id, outcome.group.model, violation, scored_by=runtime.settings.scored_by)
        for request_id in outcome.group.request_ids
    ]


def _json_list(document: str) -> list[object]:
    value = json.loads(document)
    return value if isinstance(value, list) else []


def _rejection_reply(rejection: Rejection, message: InboundMessage, runtime: ScoringRuntime) -> ScoreReply:
    code = ErrorCode(rejection.code) if rejection.code in ErrorCode._value2member_map_ else None
    violation = ContractViolation(code or ErrorCode.SCHEMA_VIOLATION, rejection.description)
    return error_reply(
        rejection.request_id,
        rejection.model,
        violation,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        scored_by=runtime.settings.scored_by,
    )


def is_permanent(exc: BaseException) -> bool:
    """A send failure that retrying cannot fix: the broker refused these messages for good."""
    from azure.servicebus.exceptions import (
        MessagingEntityDisabledError,
        MessagingEntityNotFoundError,
        ServiceBusAuthenticationError,
        ServiceBusAuthorizationError,
    )

    refused = (
        MessagingEntityNotFoundError,
        MessagingEntityDisabledError,
        ServiceBusAuthorizationError,
        ServiceBusAuthenticationError,
        ValueError,  # MessageSizeExceededError is one
    )
    return isinstance(exc, refused) or getattr(exc, "retryable", True) is False


def _broker_words(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def send_to_queue(replies: list[Addressed], runtime: ScoringRuntime) -> dict[str, str]:
    """Send one queue's replies, retrying transient failures; {request id: why} for those not sent."""
    policy = runtime.settings.retry
    for attempt in range(1, policy.max_attempts + 1):
        try:
            await runtime.replies.send(replies)
            return {}
        except Exception as exc:
            if is_permanent(exc):
                return await _isolate(replies, exc, runtime)
            if attempt == policy.max_attempts:
                words = f"not sent after {attempt} attempts: {_broker_words(exc)}"
                return {reply.request_id: _undeliverable(address, words) for address, reply in replies}
            await asyncio.sleep(policy_delay_s(policy, attempt))
    return {}


async def _isolate(replies: list[Addressed], exc: BaseException, runtime: ScoringRuntime) -> dict[str, str]:
    """The broker refused a batch for good: send each reply alone to find the ones it refuses."""
    if len(replies) == 1:
        address, reply = replies[0]
        return {reply.request_id: _undeliverable(address, _broker_words(exc))}
    failed: dict[str, str] = {}
    for each in replies:
        failed.update(await send_to_queue([each], runtime))
    return failed


def _undeliverable(address: ReplyAddress, words: str) -> str:
    session = f" (session {address.session_id!r})" if address.session_id else ""
    return f"the reply could not be sent to queue {address.queue!r}{session}: {words}"


async def send_replies(
    batch: list[InboundMessage],
    outcomes: list[GroupOutcome],
    rejected: list[Rejection],
    runtime: ScoringRuntime,
) -> SendSummary:
    """Queue requests get their reply on their reply queue and session (one batched send per
    queue); HTTP requests get theirs in the orchestration output."""
    by_id = {message.message_id: message for message in batch}
    replies: list[ScoreReply] = []
    for outcome in outcomes:
        replies.extend(await _outcome_replies(outcome, runtime))
    replies.extend(
        _rejection_reply(r, by_id[r.request_id], runtime) for r in rejected if r.request_id in by_id
    )
    summary = SendSummary()
    to_queue: dict[str, list[Addressed]] = defaultdict(list)
    replied = [by_id[reply.request_id] for reply in replies if reply.request_id in by_id]
    spans = start_reply_spans(replied, queue_of={m.message_id: m.reply_to or "" for m in replied})
    sent: list[ScoreReply] = []
    for reply in replies:
        message = by_id.get(reply.request_id)
        if message is None:
            continue
        reply = finish_timings(reply, message)
        if message.origin == "http" or not message.reply_to:
            summary.http_replies[reply.request_id] = reply.model_dump(mode="json", exclude_none=True)
            sent.append(reply)
        else:
            address = ReplyAddress(message.reply_to, message.reply_to_session_id)
            to_queue[address.queue].append((address, reply))
    failed: dict[str, str] = {}
    with batch_span("qscore.functions.send_replies", list(spans.values())):
        for queue_replies in to_queue.values():
            failed.update(await send_to_queue(queue_replies, runtime))
    for queue_replies in to_queue.values():
        sent.extend(reply for _, reply in queue_replies if reply.request_id not in failed)
    finish_reply_spans({k: v for k, v in spans.items() if k not in failed}, outcome="replied")
    finish_reply_spans({k: v for k, v in spans.items() if k in failed}, outcome=REPLY_UNDELIVERABLE)
    summary.sent = sum(len(each) for each in to_queue.values()) - len(failed)
    summary.ok = sum(reply.status == ReplyStatus.OK for reply in sent)
    summary.errors = sum(reply.status == ReplyStatus.ERROR for reply in sent)
    summary.undeliverable = [
        Rejection(
            request_id=request_id,
            model=_model_of(replies, request_id),
            code=REPLY_UNDELIVERABLE,
            description=why,
        )
        for request_id, why in failed.items()
    ]
    record_replies(sent)
    return summary


def _model_of(replies: Sequence[ScoreReply], request_id: str) -> str:
    return next((reply.model for reply in replies if reply.request_id == request_id), "")


def failure_records(
    instance_id: str, batch: Sequence[InboundMessage], rejected: Sequence[Rejection]
) -> list[FailureRecord]:
    """Each rejected request as a failure record: its original body, reason and reply address."""
    by_id = {message.message_id: message for message in batch}
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
    instance_id: str, batch: Sequence[InboundMessage], rejected: list[Rejection], runtime: ScoringRuntime
) -> int:
    recorded = await runtime.failures.record(failure_records(instance_id, batch, rejected))
    record_dead_letters([r.code for r in rejected])
    return recorded


def unanswered_after_failed_send(
    batch: Sequence[InboundMessage], recorded: Sequence[Rejection], failure: str
) -> list[Rejection]:
    """The reply activity failed for good: every queue request not recorded otherwise."""
    already = {rejection.request_id for rejection in recorded}
    description = f"the reply activity failed after its retries, so no reply was confirmed: {failure}"
    return [
        Rejection(request_id=m.message_id, model="", code=REPLY_UNDELIVERABLE, description=description)
        for m in dict((m.message_id, m) for m in batch).values()
        if m.origin == "queue" and m.message_id not in already
    ]
