"""The reply-batch form (schema version 1): the replies of several items in one message.

The broker costs about the same per message whatever its size, so a request-batch message
whose caller asks for it (`accept` lists `REPLY_BATCH_CONTENT_TYPE`) has the replies of its
items that go to one reply address (queue and session) in one reply step sent as one message:
a body `{"schema_version": "1", "replies": [<score-reply v1>, ...]}` whose entries are full
reply objects, each with its own `request_id` (its correlation id); the message's own
`correlation_id` is the request-batch message's id. `reply_messages` is the one rule of which
replies share a message, used by the reply sender of both runtimes. See docs/contract.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qscore.contracts.messages import SCHEMA_VERSION, ScoreReply

REPLY_BATCH_CONTENT_TYPE = "application/vnd.qscore.reply-batch.v1+json"
_BODY_START = b'{"schema_version":"1","replies":['
_BODY_END = b"]}"
# The body's frame around its entries: the size of a body is this plus its entries and commas.
REPLY_BATCH_FRAME_BYTES = len(_BODY_START) + len(_BODY_END)


class ScoreReplyBatch(BaseModel):
    """Body of a reply-batch message (content type `application/vnd.qscore.reply-batch.v1+json`)."""

    model_config = ConfigDict(extra="ignore")

    schema_version: Literal["1"] = SCHEMA_VERSION
    replies: list[ScoreReply] = Field(
        min_length=1, description="Each a full reply object, with its own request_id (correlation id)"
    )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_reply_batch(content_type: str | None) -> bool:
    return _media_type(content_type) == REPLY_BATCH_CONTENT_TYPE


def accepts_reply_batch(accept: str | None) -> bool:
    """Whether a request-batch message's `accept` property (a comma-separated list of media
    types, as HTTP's Accept) asks for its items' replies in reply-batch messages."""
    return bool(accept) and any(is_reply_batch(each) for each in str(accept).split(","))


def encode_reply_batch(entries: Sequence[bytes]) -> bytes:
    """A reply-batch body of replies already encoded as JSON (`reply_json`)."""
    return _BODY_START + b",".join(entries) + _BODY_END


def reply_json(reply: ScoreReply) -> bytes:
    """One reply as the JSON the reply form (and a reply-batch entry) carries."""
    return reply.model_dump_json(exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class ReplyMessagePlan:
    """One reply message to send: the indexes of the replies it carries, and for a reply-batch
    message its body (None: a single reply, in the form its request asked for)."""

    indexes: list[int]
    body: bytes | None = None


def reply_messages(
    keys: Sequence[Hashable | None], *, entry_of: Callable[[int], bytes], max_body_bytes: int
) -> list[ReplyMessagePlan]:
    """Which replies share a reply message: the one rule, for both runtimes' reply senders.

    `keys[i]`: reply i's batch key, its reply address (queue, session) and the request-batch
    message that asked for reply-batch messages, or None when its request did not ask. Replies
    with one key (at least two of them) go in reply-batch messages, in their order, as many as
    fit a body of `max_body_bytes` (the link's max message size, less room for the message's
    properties); every other reply, and one too large to share, goes alone. `entry_of(i)` is
    reply i as JSON (called only for replies that may share). Plans are in the order of their
    first reply."""
    counts = Counter(key for key in keys if key is not None)
    plans: list[ReplyMessagePlan] = []
    open_plans: dict[Hashable, tuple[list[int], list[bytes], int]] = {}

    def close(key: Hashable) -> None:
        indexes, entries, _ = open_plans.pop(key)
        body = encode_reply_batch(entries) if len(indexes) > 1 else None
        plans.append(ReplyMessagePlan(indexes, body))

    for index, key in enumerate(keys):
        if key is None or counts[key] < 2:
            plans.append(ReplyMessagePlan([index]))
            continue
        entry = entry_of(index)
        if REPLY_BATCH_FRAME_BYTES + len(entry) > max_body_bytes:
            plans.append(ReplyMessagePlan([index]))  # alone (by reference, or refused as too large)
            continue
        if key in open_plans and open_plans[key][2] + 1 + len(entry) > max_body_bytes:
            close(key)  # full: the rest of this key's replies start the next message
        if key not in open_plans:
            open_plans[key] = ([], [], REPLY_BATCH_FRAME_BYTES - 1)  # -1: no comma before the first
        indexes, entries, size = open_plans[key]
        indexes.append(index)
        entries.append(entry)
        open_plans[key] = (indexes, entries, size + 1 + len(entry))
    for key in list(open_plans):
        close(key)
    plans.sort(key=lambda plan: plan.indexes[0])
    return plans


def decode_reply_batch(body: bytes) -> list[ScoreReply]:
    """The replies of a reply-batch body; ValueError (pydantic's ValidationError is one) when it
    is not one. Fields this version does not know, of the body or of an entry, are ignored
    (they may be added within schema version 1)."""
    try:  # the common case, no unknown field: pydantic parses and checks in one pass (~2x faster)
        batch = ScoreReplyBatch.model_validate_json(body)
    except ValueError:
        pass  # unknown fields of an entry (ScoreReply forbids them), or not a reply batch at all
    else:
        if "schema_version" in batch.model_fields_set:  # as required below
            return batch.replies
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("replies"), list):
        raise ValueError("a reply-batch body is a JSON object with a `replies` list")
    known = ScoreReply.model_fields
    entries = [
        {key: value for key, value in entry.items() if key in known} if isinstance(entry, dict) else entry
        for entry in document["replies"]
    ]
    checked = {"schema_version": document.get("schema_version"), "replies": entries}
    return ScoreReplyBatch.model_validate(checked).replies
