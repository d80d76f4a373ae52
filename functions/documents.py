"""The payload-store documents an orchestration derives from its batch.

- A **prepared group** (written by validation, one per (model, version) group): each request as
  validation left it (envelope, resolved version and route, the checked input arrays) and the
  model spec, so the inference and shadow activities score it without decoding or validating it
  again. Binary: a 4-byte big-endian header length, a JSON header, then each numeric array's
  little-endian bytes (8-byte aligned); a `BYTES` array's elements are base64 strings in the
  header. No pickle: the store is not trusted to run code.
- A **replies document** (written by the inference activity, one per group, and by validation
  for the error replies of rejected requests): each reply with the envelope of its request, so
  the reply activity sends it without the batch.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from functions.payloads import Envelope
from qscore.contracts import ModelSpec, ScoreReply, ScoreRequest
from qscore.contracts.model_spec import BYTES, NUMPY_TO_TRITON
from qscore.scoring import PreparedRequest, ScoringItem

PREPARED_FORMAT = "qscore.prepared-group/1"
_LENGTH = struct.Struct(">I")
_ALIGN = 8


class DocumentCorrupt(Exception):
    """A stored document that is not what its reference promised (wrong format, cut short)."""


@dataclass(frozen=True)
class PreparedMember:
    """One validated request of a group: where its reply goes, and what Triton gets."""

    envelope: Envelope
    request: PreparedRequest


def encode_prepared(members: Sequence[PreparedMember]) -> bytes:
    """One group's validated requests (all of one model) as a compact binary document."""
    buffers: list[bytes] = []
    offset = 0
    entries: list[dict[str, Any]] = []
    for member in members:
        arrays: dict[str, Any] = {}
        for name, array in member.request.item.arrays.items():
            if NUMPY_TO_TRITON.get(array.dtype) == BYTES or array.dtype == object:
                elements = [base64.b64encode(bytes(each)).decode() for each in array.ravel()]
                arrays[name] = {"shape": list(array.shape), "bytes": elements}
                continue
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            arrays[name] = {"shape": list(array.shape), "dtype": array.dtype.newbyteorder("<").str}
            arrays[name] |= {"offset": offset, "nbytes": len(raw)}
            padding = -len(raw) % _ALIGN
            buffers.append(raw + b"\0" * padding)
            offset += len(raw) + padding
        entries.append(_member_header(member, arrays))
    spec = members[0].request.spec.model_dump(mode="json") if members else None
    header = json.dumps({"format": PREPARED_FORMAT, "spec": spec, "members": entries}).encode()
    return _LENGTH.pack(len(header)) + header + b"".join(buffers)


def _member_header(member: PreparedMember, arrays: dict[str, Any]) -> dict[str, Any]:
    prepared, request = member.request, member.request.item.request
    return {
        "envelope": member.envelope.model_dump(mode="json", exclude_none=True),
        "request": {
            "model": request.model,
            "version": request.version,
            "deadline": request.deadline.isoformat() if request.deadline is not None else None,
            "priority": request.priority,
        },
        "version": prepared.version,
        "shadow_version": prepared.shadow_version,
        "route": prepared.route,
        "arrays": arrays,
    }


def decode_prepared(data: bytes) -> list[PreparedMember]:
    """The members of a prepared-group document (arrays are read-only views of `data`)."""
    try:
        (length,) = _LENGTH.unpack_from(data)
        header = json.loads(data[_LENGTH.size : _LENGTH.size + length])
    except (struct.error, ValueError) as exc:
        raise DocumentCorrupt(f"not a prepared-group document: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != PREPARED_FORMAT:
        raise DocumentCorrupt("not a prepared-group document (format)")
    if not header["members"]:
        return []
    spec = ModelSpec.model_validate(header["spec"])
    body = memoryview(data)[_LENGTH.size + length :]
    return [_member(entry, spec, body) for entry in header["members"]]


def _member(entry: dict[str, Any], spec: ModelSpec, body: memoryview) -> PreparedMember:
    envelope = Envelope.model_validate(entry["envelope"])
    fields = entry["request"]
    deadline = datetime.fromisoformat(fields["deadline"]) if fields["deadline"] else None
    # Validated before it was stored: the inputs are in `arrays`, checked against the spec.
    request = ScoreRequest.model_construct(
        model=fields["model"],
        version=fields["version"],
        inputs={},
        deadline=deadline,
        priority=fields["priority"],
    )
    item = ScoringItem(
        request_id=envelope.message_id,
        request=request,
        arrays={name: _array(each, body) for name, each in entry["arrays"].items()},
        received_at=envelope.received_at,
        enqueued_at=envelope.enqueued_at,
    )
    prepared = PreparedRequest(
        item=item,
        spec=spec,
        version=entry["version"],
        shadow_version=entry["shadow_version"],
        route=entry["route"],
    )
    return PreparedMember(envelope=envelope, request=prepared)


def _array(entry: dict[str, Any], body: memoryview) -> np.ndarray:
    shape = tuple(entry["shape"])
    if "bytes" in entry:
        flat = np.empty(len(entry["bytes"]), dtype=object)
        for index, element in enumerate(entry["bytes"]):
            flat[index] = base64.b64decode(element)
        return flat.reshape(shape)
    dtype = np.dtype(entry["dtype"])
    start, size = int(entry["offset"]), int(entry["nbytes"])
    if start + size > len(body):
        raise DocumentCorrupt("a prepared-group document was cut short")
    array = np.frombuffer(body[start : start + size], dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


class AddressedReply(BaseModel):
    envelope: Envelope
    reply: ScoreReply


class StoredReplies(BaseModel):
    """A replies document: each reply with the envelope of the request it answers."""

    replies: list[AddressedReply]


def encode_replies(replies: Sequence[tuple[Envelope, ScoreReply]]) -> bytes:
    document = StoredReplies(replies=[AddressedReply(envelope=e, reply=r) for e, r in replies])
    return document.model_dump_json(exclude_none=True).encode()


def decode_replies(data: bytes) -> list[AddressedReply]:
    return StoredReplies.model_validate_json(data).replies
