"""Judge what a request message carries besides its body: request id, content type, reply address.

This and `RequestPreparer` (the body) are the one place a bad request is given its code
(`qscore.contracts.BAD_INPUT`); the worker and the Functions app both call them, so a request is
judged the same way in both runtimes. `undeliverable` and `inference_violation` give the codes
for what fails on the way for one request alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from qscore.contracts import (
    BINARY_REQUEST_CONTENT_TYPE,
    REQUEST_BATCH_CONTENT_TYPE,
    REQUEST_CONTENT_TYPE,
    ContractViolation,
    ErrorCode,
    accepts_binary_reply,
    accepts_reply_batch,
    is_batch_content_type,
)
from qscore.transport.replies import ReplyAddress


@dataclass(frozen=True)
class RequestEnvelope:
    """The Service Bus properties of a request message that the contract gives a meaning."""

    message_id: str | None
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    traceparent: str | None = None  # the producer's W3C trace context, carried on to the reply
    accept: str | None = None  # the reply form the producer takes (`accept`, docs/contract.md)


@dataclass(frozen=True)
class ReplyPolicy:
    """Where replies may go. `allowed_queues` empty: only `default_queue` (so a producer cannot
    make the scoring identity a relay to arbitrary queues). `sessions_required`: the reply queues
    are session-enabled (the contract's are), so a reply needs the request's session id."""

    default_queue: str
    allowed_queues: frozenset[str] = field(default_factory=frozenset)
    sessions_required: bool = True
    # An answered rejection is also kept on the dead-letter sub-queue (the failures queue in the
    # Functions app), for operators who audit them there (QSCORE_KEEP_ANSWERED_REJECTIONS).
    keep_answered_rejections: bool = False

    @classmethod
    def create(
        cls,
        default_queue: str,
        allowed: Iterable[str] = (),
        *,
        sessions_required: bool = True,
        keep_answered_rejections: bool = False,
    ) -> ReplyPolicy:
        names = frozenset(name.strip() for name in allowed if name.strip())
        return cls(
            default_queue, names or frozenset({default_queue}), sessions_required, keep_answered_rejections
        )

    def allows(self, queue: str) -> bool:
        return queue in (self.allowed_queues or {self.default_queue})


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def reply_address_of(envelope: RequestEnvelope, policy: ReplyPolicy) -> ReplyAddress:
    """Where a queue request's reply goes: the one place that decides it, for both runtimes.

    Read from the message's properties only (never the body, so a body that is not JSON can be
    answered): `reply_to`, or `policy.default_queue` when only `reply_to_session_id` is set, and
    the session. Raises ContractViolation with a code the table dead-letters (the caller cannot
    be told) when there is no request id to correlate a reply with, or no address it may use."""
    if not envelope.message_id:
        raise ContractViolation(
            ErrorCode.NO_MESSAGE_ID,
            "the message has no message_id: set it to a unique id per request; replies carry it back "
            "as correlation_id",
        )
    if not envelope.reply_to and not envelope.reply_to_session_id:
        raise ContractViolation(
            ErrorCode.NO_REPLY_ADDRESS,
            "the message names no reply address: set reply_to (the reply queue) and "
            "reply_to_session_id (your session on it)",
        )
    queue = envelope.reply_to or policy.default_queue
    if not policy.allows(queue):
        allowed = ", ".join(sorted(policy.allowed_queues or {policy.default_queue}))
        raise ContractViolation(
            ErrorCode.REPLY_TO_NOT_ALLOWED,
            f"reply_to {queue!r} is not an allowed reply queue (allowed: {allowed}; "
            "QSCORE_ALLOWED_REPLY_QUEUES)",
        )
    if policy.sessions_required and not envelope.reply_to_session_id:
        raise ContractViolation(
            ErrorCode.NO_REPLY_SESSION,
            f"reply queue {queue!r} requires sessions: set reply_to_session_id to your own session id",
        )
    return ReplyAddress(
        queue=queue,
        session_id=envelope.reply_to_session_id,
        traceparent=envelope.traceparent,
        binary_reply=accepts_binary_reply(envelope.accept),
    )


def check_content_type(envelope: RequestEnvelope) -> None:
    """Raises ContractViolation `unsupported_content_type` (answered: the caller can be reached)
    for a content type other than a v1 request's."""
    if is_batch_content_type(envelope.content_type):  # both runtimes take it apart before this check
        raise ContractViolation(
            ErrorCode.UNSUPPORTED_CONTENT_TYPE,
            f"{REQUEST_BATCH_CONTENT_TYPE!r} (many requests in one message) is taken apart by the "
            "queue intake of both runtimes (the worker and the Functions app), not inside one: send it "
            f"to the scoring queue, or each item as its own {REQUEST_CONTENT_TYPE!r} message",
        )
    if envelope.content_type and _media_type(envelope.content_type) not in (
        REQUEST_CONTENT_TYPE,
        BINARY_REQUEST_CONTENT_TYPE,
    ):
        raise ContractViolation(
            ErrorCode.UNSUPPORTED_CONTENT_TYPE,
            f"content_type {envelope.content_type!r} is not {REQUEST_CONTENT_TYPE!r} or "
            f"{BINARY_REQUEST_CONTENT_TYPE!r}: send a v1 request with one of them (or none, for JSON)",
        )


def check_envelope(envelope: RequestEnvelope, policy: ReplyPolicy) -> ReplyAddress:
    """The reply address of a queue request (`reply_address_of`), then its content type checked;
    raises ContractViolation. Runtimes that must answer a foreign content type call the two
    apart, so they hold the address when the content type is refused."""
    address = reply_address_of(envelope, policy)
    check_content_type(envelope)
    return address


def reply_batch_of(batch_message_id: str | None, accept: str | None) -> str | None:
    """For an item of a request-batch message (`batch_message_id`; None for a single request):
    the id its reply's address carries (`ReplyAddress.reply_batch`) when the message's `accept`
    asked for reply-batch messages, so its batch-mates' replies to the same session share
    messages (qscore.contracts.reply_batch); None otherwise: one reply message per item."""
    if batch_message_id is None or not accepts_reply_batch(accept):
        return None
    return batch_message_id


def unreadable_properties(detail: str) -> ContractViolation:
    """The message's properties could not be read (`detail`: the reader's error): no reply
    address can be trusted, so the request is dead-lettered."""
    return ContractViolation(
        ErrorCode.UNREADABLE_PROPERTIES,
        f"the message's properties could not be read ({detail}): send it again with the "
        "producer library, or set message_id, reply_to and reply_to_session_id as plain strings",
    )


def undeliverable(address: ReplyAddress, broker_words: str) -> ContractViolation:
    """The broker refused this request's reply for good (queue not found, unauthorized, too large,
    session required): the request is dead-lettered with the broker's words."""
    session = f" session {address.session_id!r}" if address.session_id else " (no session)"
    return ContractViolation(
        ErrorCode.REPLY_UNDELIVERABLE,
        f"the reply to queue {address.queue!r}{session} was refused: {broker_words}",
    )


def inference_violation(model: str, version: str, error: Exception, *, not_served: bool) -> ContractViolation:
    """Triton refused this request alone: the version is not served, or the inputs were refused."""
    if not_served:
        return ContractViolation(
            ErrorCode.UNKNOWN_VERSION, f"model {model!r} version {version} is not served: {error}"
        )
    return ContractViolation(ErrorCode.INFERENCE_FAILED, f"Triton refused the request: {error}")
