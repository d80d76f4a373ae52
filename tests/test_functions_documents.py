"""The payload-store documents of the Functions path: a prepared group comes back as validation
left it (arrays, route, deadline, envelope) without decoding a request again."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from functions.documents import (
    DocumentCorrupt,
    PreparedMember,
    decode_prepared,
    decode_replies,
    encode_prepared,
    encode_replies,
)
from functions.payloads import Envelope
from qscore.contracts import ContractViolation, ErrorCode, ModelSpec, ScoreRequest, Tensor, TensorSpec
from qscore.scoring import PreparedRequest, ScoringItem, error_reply

SPEC = ModelSpec(
    name="mixed",
    versions=["1", "2"],
    max_batch_size=8,
    inputs=[
        TensorSpec(name="pixels", datatype="FP32", dims=[3]),
        TensorSpec(name="ids", datatype="INT64", dims=[2]),
        TensorSpec(name="images", datatype="BYTES", dims=[1]),
    ],
    outputs=[TensorSpec(name="scores", datatype="FP32", dims=[2])],
)
DEADLINE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def member(request_id: str, rows: int) -> PreparedMember:
    images = np.empty((rows, 1), dtype=object)
    for row in range(rows):
        images[row, 0] = bytes([row, 255, 0, 7])
    arrays = {
        "pixels": np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) / 7,
        "ids": np.arange(rows * 2, dtype=np.int64).reshape(rows, 2) - 3,
        "images": images,
    }
    request = ScoreRequest(
        model="mixed",
        version="production",
        inputs={name: Tensor.from_numpy(array) for name, array in arrays.items()},
        deadline=DEADLINE,
        priority=3,
    )
    item = ScoringItem(
        request_id=request_id, request=request, arrays=arrays, received_at=100.5, enqueued_at=99.0
    )
    envelope = Envelope(
        message_id=request_id,
        reply_to="scoring-replies",
        reply_to_session_id="s-1",
        received_at=100.5,
        enqueued_at=99.0,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    prepared = PreparedRequest(item=item, spec=SPEC, version="2", shadow_version="1", route="canary")
    return PreparedMember(envelope=envelope, request=prepared)


def test_prepared_group_round_trip() -> None:
    members = [member("r-1", 1), member("r-2", 3)]
    loaded = decode_prepared(encode_prepared(members))
    assert [m.envelope for m in loaded] == [m.envelope for m in members]
    for before, after in zip(members, loaded, strict=True):
        assert after.request.spec == SPEC
        assert (after.request.version, after.request.shadow_version, after.request.route) == (
            "2",
            "1",
            "canary",
        )
        item = after.request.item
        assert (item.request_id, item.received_at, item.enqueued_at) == (
            "r-1" if item.rows == 1 else "r-2",
            100.5,
            99.0,
        )
        assert item.request.deadline == DEADLINE and item.request.priority == 3
        assert item.request.model == "mixed" and item.request.version == "production"
        for name, array in before.request.item.arrays.items():
            assert item.arrays[name].dtype == array.dtype and item.arrays[name].shape == array.shape
            assert item.arrays[name].tolist() == array.tolist()


def test_prepared_group_is_compact() -> None:
    """Numeric tensors travel as raw bytes, not as JSON number lists (the request's form)."""
    rows = member("r-1", 64)
    document = encode_prepared([rows])
    as_json = rows.request.item.request.model_dump_json()
    assert len(document) < len(as_json)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02{}"])
def test_a_document_that_is_not_a_prepared_group_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentCorrupt):
        decode_prepared(data)


def test_replies_document_round_trip() -> None:
    envelope = member("r-1", 1).envelope
    reply = error_reply("r-1", "mixed", ContractViolation(ErrorCode.EXPIRED, "late"), received_at=100.5)
    (loaded,) = decode_replies(encode_replies([(envelope, reply)]))
    assert loaded.envelope == envelope and loaded.reply == reply
