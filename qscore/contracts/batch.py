"""The request-batch form (schema version 1): many independent requests in one message.

One Service Bus message may carry up to `MAX_BATCH_ITEMS` requests ("items"), each with its own
request id, inputs, deadline and reply session. The envelope (this message's `message_id`,
content type and reply address) is judged once; each item is then judged, scored and answered
on its own: its reply carries `correlation_id` = the item's `request_id`. Only an unreadable
body (not JSON, no `items` list, an item without a usable `request_id`, duplicate request
ids) dead-letters the whole message; a bad item gets an error reply of its own. See
docs/contract.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qscore.contracts.errors import ContractViolation, ErrorCode
from qscore.contracts.messages import SCHEMA_VERSION, ScoreRequest
from qscore.contracts.validation import DEFAULT_MAX_MESSAGE_BYTES, violation_from

REQUEST_BATCH_CONTENT_TYPE = "application/vnd.qscore.request-batch.v1+json"
MAX_BATCH_ITEMS = 1024


class BatchItem(ScoreRequest):
    """One request of a batch: a request body plus its own id and (optionally) reply session."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    request_id: str = Field(
        min_length=1, max_length=128, description="This item's request id (correlation id)"
    )
    reply_to_session_id: str | None = Field(
        default=None, description="This item's reply session; default: the message's reply_to_session_id"
    )

    def request(self) -> ScoreRequest:
        """The item as a single request body (what the scoring path reads)."""
        return ScoreRequest.model_construct(
            **{name: getattr(self, name) for name in ScoreRequest.model_fields}
        )


class ScoreRequestBatch(BaseModel):
    """Body of a request-batch message (content type `application/vnd.qscore.request-batch.v1+json`)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class _RequestBatchBody(BaseModel):
    """The outer object of a request-batch body: what must be readable for the items to be
    answered one by one."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


@dataclass(frozen=True, slots=True)
class DecodedItem:
    """One item: its id and reply session, and either its request or why it cannot be scored."""

    request_id: str
    reply_to_session_id: str | None
    model: str
    request: ScoreRequest | None = None
    violation: ContractViolation | None = None


def is_batch_content_type(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).split(";", 1)[0].strip().lower() == (
        REQUEST_BATCH_CONTENT_TYPE
    )


def decode_batch(body: bytes, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[DecodedItem]:
    """The items of a request-batch body; raises ContractViolation (dead-letter the message) only
    when its outer object (`schema_version`, `items`) is unreadable. A bad item is returned with
    its violation (answer it with an error)."""
    if len(body) > max_message_bytes:
        raise ContractViolation(
            ErrorCode.TOO_LARGE, f"body is {len(body)} bytes; the limit is {max_message_bytes}"
        )
    try:
        outer = _RequestBatchBody.model_validate_json(body)
    except ValidationError as exc:
        raise violation_from(exc, what="request batch") from None
    items = [_item_identity(index, raw) for index, raw in enumerate(outer.items)]
    seen: set[str] = set()
    for request_id, _ in items:
        if request_id in seen:
            raise ContractViolation(
                ErrorCode.SCHEMA_VIOLATION,
                f"items: request_id {request_id!r} appears twice; every item needs its own id",
            )
        seen.add(request_id)
    return [_decode_item(raw, identity) for raw, identity in zip(outer.items, items, strict=True)]


def _item_identity(index: int, raw: dict[str, Any]) -> tuple[str, str | None]:
    """An item's request id and reply session: without them it cannot be answered on its own."""
    request_id = raw.get("request_id")
    session = raw.get("reply_to_session_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        raise ContractViolation(
            ErrorCode.SCHEMA_VIOLATION,
            f"items.{index}.request_id: every item needs a request_id string of 1..128 characters",
        )
    if session is not None and not isinstance(session, str):
        raise ContractViolation(
            ErrorCode.SCHEMA_VIOLATION, f"items.{index}.reply_to_session_id: must be a string"
        )
    return request_id, session


def _decode_item(raw: dict[str, Any], identity: tuple[str, str | None]) -> DecodedItem:
    request_id, session = identity
    model = raw.get("model")
    model_name = model if isinstance(model, str) else ""
    try:
        item = BatchItem.model_validate(raw)
    except ValidationError as exc:
        violation = violation_from(exc, what="item")
        return DecodedItem(request_id, session, model_name, violation=violation)
    return DecodedItem(request_id, session, item.model, request=item.request())
