"""What flows between the trigger, the orchestrator and the activities (all JSON-serialisable).

Durable Functions records every orchestration input and activity input/output in its history and
replays them, so these documents stay small: request bodies travel once, inline when the batch
is small, otherwise as a reference into the payload store (see functions/payload_store.py).
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, Field

from functions.settings import RetryPolicy


class InboundMessage(BaseModel):
    """One request as it arrived, with what the reply needs."""

    message_id: str = Field(description="the request id; a stand-in when the message had none")
    has_message_id: bool = True
    body: str = Field(description="UTF-8 text, or base64 when `encoding` is base64")
    encoding: Literal["utf-8", "base64"] = "utf-8"
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    enqueued_at: float | None = None
    received_at: float
    traceparent: str | None = Field(default=None, description="the producer's W3C trace context")
    tracestate: str | None = None
    origin: Literal["queue", "http"] = "queue"
    content_type: str | None = None

    @classmethod
    def from_body(cls, body: bytes, **fields: object) -> InboundMessage:
        try:
            return cls(body=body.decode("utf-8"), **fields)  # type: ignore[arg-type]
        except UnicodeDecodeError:
            return cls(body=base64.b64encode(body).decode(), encoding="base64", **fields)  # type: ignore[arg-type]

    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body) if self.encoding == "base64" else self.body.encode("utf-8")


class MessageBatch(BaseModel):
    messages: list[InboundMessage]


class Carried(BaseModel):
    """A JSON document carried by value (`inline`) or by reference (`ref` into the payload store)."""

    inline: str | None = None
    ref: str | None = None
    size_bytes: int = 0


class OrchestrationInput(BaseModel):
    batch: Carried
    message_count: int
    retry: RetryPolicy


class Group(BaseModel):
    """Requests of one model and resolved version: one inference activity, one Triton call."""

    model: str
    version: str
    request_ids: list[str]


class Rejection(BaseModel):
    """A request that can never be scored as sent, with the reason a person can act on."""

    request_id: str
    model: str
    code: str
    description: str


class ValidationResult(BaseModel):
    groups: list[Group]
    shadow_groups: list[Group] = Field(
        default_factory=list, description="requests to score again by a shadow version (never replied)"
    )
    rejected_with_reply: list[Rejection] = Field(default_factory=list)
    dead_letters: list[Rejection] = Field(default_factory=list)


class InferInput(BaseModel):
    batch: Carried
    group: Group


class GroupOutcome(BaseModel):
    """Replies for one group (`replies` carries a JSON list of ScoreReply), or why it failed."""

    group: Group
    replies: Carried | None = None
    failure: str | None = None
    dead_letters: list[Rejection] = Field(
        default_factory=list, description="queue requests to record on the failures queue"
    )


class ShadowOutcome(BaseModel):
    """What a shadow inference activity did: results went to the interaction log only."""

    group: Group
    scored: int = 0
    logged: bool = False


class SendInput(BaseModel):
    batch: Carried
    outcomes: list[GroupOutcome]
    rejected: list[Rejection]


class SendSummary(BaseModel):
    sent: int = 0
    ok: int = 0
    errors: int = 0
    http_replies: dict[str, dict[str, object]] = Field(default_factory=dict)
    unanswered: list[Rejection] = Field(
        default_factory=list,
        description="queue requests to record on the failures queue (reply refused or never taken, "
        "Triton refused them, inference failed after retries)",
    )


class DeadLetterInput(BaseModel):
    """Requests to record on the failures queue. `replies_failed` (the failure text) when the
    reply activity itself failed for good: then every queue request not yet recorded is."""

    instance_id: str
    rejected: list[Rejection]
    batch: Carried | None = None
    replies_failed: str | None = None


class BatchOutcome(BaseModel):
    """The orchestration output."""

    instance_id: str
    messages: int
    groups: int
    replied: int
    ok: int
    errors: int
    dead_lettered: int
    failed_groups: int
    shadow_scored: int = 0
    shadow_failed_groups: int = 0
    http_replies: dict[str, dict[str, object]] = Field(default_factory=dict)
