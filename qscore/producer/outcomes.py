"""What the producer reports per request, and its running counters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qscore.contracts import (
    ContractViolation,
    ErrorCode,
    ReplyStatus,
    ScoreReply,
    decode_binary_reply,
    header_length_of,
    is_binary_reply,
)


class ScoringError(Exception):
    """The service answered a request with an error reply: `code` is the stable code
    (docs/contract.md), `description` says what to change."""

    def __init__(self, request_id: str, code: ErrorCode, description: str) -> None:
        super().__init__(f"{request_id}: {code}: {description}")
        self.request_id = request_id
        self.code = code
        self.description = description


class ReplyTimedOut(TimeoutError):
    """No reply arrived within the request's timeout."""


class OutcomeKind(StrEnum):
    REPLIED = "replied"  # a reply arrived (its status may still be `error`)
    TIMED_OUT = "timed_out"  # no reply within the request's timeout


@dataclass(frozen=True)
class ReplyOutcome:
    """The end of one request's round trip. Times are epoch seconds (time.time())."""

    request_id: str
    kind: OutcomeKind
    sent_at: float
    finished_at: float
    reply: ScoreReply | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.status is ReplyStatus.OK

    def raise_for_error(self) -> ReplyOutcome:
        """This outcome when it is an ok reply; ScoringError (code and description) for an error
        reply, ReplyTimedOut when none came. `(await producer.score(...)).raise_for_error()`."""
        if self.reply is None:
            raise ReplyTimedOut(f"{self.request_id}: no reply within its timeout")
        error = self.reply.error
        if self.reply.status is ReplyStatus.ERROR or error is not None:
            if error is None:
                raise ScoringError(
                    self.request_id, ErrorCode.INFERENCE_FAILED, "an error reply without its error"
                )
            raise ScoringError(self.request_id, error.code, error.message)
        return self

    @property
    def latency_ms(self) -> float:
        """End to end as the producer saw it: send call returned -> reply received (or timeout)."""
        return (self.finished_at - self.sent_at) * 1000


@dataclass
class ProducerStats:
    sent: int = 0
    replied: int = 0
    timed_out: int = 0
    duplicates: int = 0  # a second reply for an answered request (at-least-once delivery)
    late: int = 0  # a reply for a request that had already timed out
    stray: int = 0  # a reply on our session for no request we know (e.g. an earlier run)
    malformed: int = 0  # a reply body that is not a ScoreReply
    reply_messages: int = 0  # reply messages read (a reply-batch message carries several replies)

    @property
    def pending(self) -> int:
        return self.sent - self.replied - self.timed_out


def parse_reply(body: bytes, *, content_type: str | None = None, header_length: object = None) -> ScoreReply:
    """A reply body, JSON or (by its content type) binary with its `header_length` property;
    top-level fields this version does not know are ignored in JSON (they may be added within
    schema version 1, see docs/contract.md). ValueError when it is neither."""
    if is_binary_reply(content_type):
        try:
            return decode_binary_reply(body, header_length_of(header_length))
        except ContractViolation as exc:  # the header length property is not a number
            raise ValueError(exc.description) from None
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("a reply body is a JSON object")
    known = ScoreReply.model_fields
    return ScoreReply.model_validate({key: value for key, value in document.items() if key in known})


def body_bytes(message: Any) -> bytes:
    body: Any = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return b"".join(bytes(part) for part in body)
