"""The request-batch form's decoding (unit): which faults dead-letter the whole message and
which stay with one item; the Functions app's refusal of the form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qscore.contracts import (
    REQUEST_BATCH_CONTENT_TYPE,
    ContractViolation,
    ErrorCode,
    decode_batch,
    is_batch_content_type,
)
from qscore.scoring import ReplyPolicy, RequestEnvelope, check_envelope

TENSOR = {"datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}


def _body(items: Any, **fields: Any) -> bytes:
    return json.dumps({"schema_version": "1", "items": items, **fields}).encode()


def _item(request_id: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "model": "digits", "inputs": {"pixels": TENSOR}, **fields}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"not json", ErrorCode.INVALID_ENCODING, "not UTF-8 JSON"),
        (_body([]), ErrorCode.SCHEMA_VIOLATION, "items"),
        (_body([_item("a")], extra=1), ErrorCode.SCHEMA_VIOLATION, "extra"),
        (_body([{"model": "digits"}]), ErrorCode.SCHEMA_VIOLATION, "items.0.request_id"),
        (_body([_item("a"), _item("a")]), ErrorCode.SCHEMA_VIOLATION, "appears twice"),
        (_body([_item("a", reply_to_session_id=3)]), ErrorCode.SCHEMA_VIOLATION, "reply_to_session_id"),
        (_body([_item("a")] * 2000), ErrorCode.TOO_LARGE, "limit"),
    ],
)
def test_an_unreadable_body_is_one_violation_for_the_message(
    body: bytes, code: ErrorCode, words: str
) -> None:
    with pytest.raises(ContractViolation) as caught:
        decode_batch(body, max_message_bytes=200_000)
    assert caught.value.code == code and words in caught.value.description


def test_a_bad_item_keeps_its_own_violation_and_its_batch_mates_decode() -> None:
    items = [_item("good"), {"request_id": "bad", "model": "digits"}, _item("late", deadline=5)]
    decoded = decode_batch(_body(items))
    assert [each.request_id for each in decoded] == ["good", "bad", "late"]
    assert decoded[0].request is not None and decoded[0].violation is None
    assert decoded[1].violation is not None and decoded[1].violation.code == ErrorCode.SCHEMA_VIOLATION
    assert decoded[2].violation is not None and "ISO 8601" in decoded[2].violation.description
    assert decoded[1].model == "digits"


def test_the_content_type_and_the_functions_app_refusal() -> None:
    assert is_batch_content_type(REQUEST_BATCH_CONTENT_TYPE + "; charset=utf-8")
    assert not is_batch_content_type(None) and not is_batch_content_type("application/json")
    envelope = RequestEnvelope("m", "scoring-replies", "s", content_type=REQUEST_BATCH_CONTENT_TYPE)
    with pytest.raises(ContractViolation) as caught:
        check_envelope(envelope, ReplyPolicy.create("scoring-replies"))
    assert caught.value.code == ErrorCode.UNSUPPORTED_CONTENT_TYPE
    assert "queue intake of both runtimes" in caught.value.description
