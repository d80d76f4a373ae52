"""What flows between the trigger, the orchestrator and the activities (all JSON-serialisable).

Durable Functions records every orchestration input and activity input/output in its history and
replays them, so these documents stay small: the batch travels once (inline when small, else as a
reference into the payload store, functions/payload_store.py); everything derived from it, the
prepared requests of each group and the built replies, lives in the payload store
(functions/documents.py) and the history holds only references, request ids, reasons and counts.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, Field

from functions.settings import RetryPolicy


class Envelope(BaseModel):
    """What the reply (and its spans) needs of a request: everything but its body."""

    message_id: str = Field(description="the request id; a stand-in when the message had none")
    has_message_id: bool = True
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    enqueued_at: float | None = None
    received_at: float
    traceparent: str | None = Field(default=None, description="the producer's W3C trace context")
    tracestate: str | None = None
    origin: Literal["queue", "http"] = "queue"
    content_type: str | None = None
    deadline: float | None = Field(
        default=None, description="the request's deadline (epoch s), for its reply's TTL"
    )
    # The binary form's header length and the reply form asked for (docs/contract.md).
    header_length: int | str | None = None
    accept: str | None = None
    # Why the message's properties could not be read (the trigger kept the message, without
    # them, so validation records it `unreadable_properties` instead of failing its batch).
    unreadable: str | None = None
    # For an item of a request-batch message: that message's id (the item's own is message_id).
    # Such an item is always answered: a bad one gets its error reply, never a failure record.
    item_of: str | None = None


class InboundMessage(Envelope):
    """One request as it arrived: its envelope and its body."""

    body: str = Field(description="UTF-8 text, or base64 when `encoding` is base64")
    encoding: Literal["utf-8", "base64"] = "utf-8"

    def envelope(self) -> Envelope:
        return Envelope.model_validate(self.model_dump(exclude={"body", "encoding"}))

    @classmethod
    def from_body(cls, body: bytes, **fields: object) -> InboundMessage:
        try:
            return cls(body=body.decode("utf-8"), **fields)  # type: ignore[arg-type]
        except UnicodeDecodeError:
            return cls(body=base64.b64encode(body).decode(), encoding="base64", **fields)  # type: ignore[arg-type]

    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body) if self.encoding == "base64" else self.body.encode("utf-8")


class TriggeredMessages(BaseModel):
    """The messages one trigger invocation hands over: one orchestration's requests (the
    orchestration input's `batch` names them, a field name the Durable history keeps)."""

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
    # HTTP requests: the caller that submitted it (its Entra oid, else sub), for the record;
    # the instance id is keyed by it too (names.http_instance_id).
    submitter: str | None = None


class Group(BaseModel):
    """Requests of one model and resolved version: one inference activity, one Triton call.
    `documents`: the payload-store references of the prepared-group documents holding its
    requests (one for a production group; a shadow group reuses its production groups')."""

    model: str
    version: str
    request_ids: list[str]
    documents: list[str] = Field(default_factory=list)


class Rejection(BaseModel):
    """A request that can never be scored as sent, with the reason a person can act on."""

    request_id: str
    model: str
    code: str
    description: str
    # Answered with an error reply already, recorded too because the operator keeps answered
    # rejections (QSCORE_KEEP_ANSWERED_REJECTIONS): its outcome is logged once, as the reply.
    answered: bool = False


class ValidationResult(BaseModel):
    groups: list[Group]
    shadow_groups: list[Group] = Field(
        default_factory=list, description="requests to score again by a shadow version (never replied)"
    )
    rejected_with_reply: list[Rejection] = Field(default_factory=list)
    rejected_replies: str | None = Field(
        default=None, description="stored replies document of `rejected_with_reply`"
    )
    dead_letters: list[Rejection] = Field(default_factory=list)
    originals: Carried | None = Field(
        default=None, description="the batch by reference, for failure records (bodies)"
    )
    stored: list[str] = Field(
        default_factory=list, description="documents validation stored, released when the run ends"
    )


class InferInput(BaseModel):
    group: Group


class GroupOutcome(BaseModel):
    """What became of one group: `replies` references its stored replies document; `errors`
    names the requests answered with an error reply (request id -> code); `failure` says why
    the group's inference failed after its retries (then there are no replies)."""

    group: Group
    replies: str | None = None
    ok: int = 0
    errors: dict[str, str] = Field(default_factory=dict)
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
    outcomes: list[GroupOutcome]
    rejected_replies: str | None = None


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
    batch: Carried | None = Field(default=None, description="the batch by reference (bodies)")
    replies_failed: str | None = None


class ReleaseInput(BaseModel):
    """Payload-store documents this orchestration stored and no longer needs."""

    documents: list[str]


class OrchestrationOutcome(BaseModel):
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
