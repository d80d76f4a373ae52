"""Unit tests for the contract module: encodings, decoding errors, deadline, checks against a spec."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from qscore.contracts import (
    ContractViolation,
    ErrorCode,
    ModelSpec,
    ScoreRequest,
    Tensor,
    TensorSpec,
    check_deadline,
    decode_request,
    request_arrays,
)

SPEC = ModelSpec(
    name="digits",
    versions=["1", "2"],
    max_batch_size=8,
    inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64])],
    outputs=[TensorSpec(name="label", datatype="INT64", dims=[1])],
)


def _request(array: np.ndarray, **extra: object) -> ScoreRequest:
    return ScoreRequest(model="digits", inputs={"pixels": Tensor.from_numpy(array)}, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("binary", [False, True])
def test_tensor_round_trip(binary: bool) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(Tensor.from_numpy(array, binary=binary).to_numpy(), array)


def test_tensor_needs_exactly_one_encoding() -> None:
    with pytest.raises(ValueError):
        Tensor(datatype="FP32", shape=[1])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe", ErrorCode.INVALID_ENCODING),
        (b"not json", ErrorCode.INVALID_ENCODING),
        (b'{"model": "digits"}', ErrorCode.SCHEMA_VIOLATION),
        (b"x" * 2000, ErrorCode.TOO_LARGE),
    ],
)
def test_decode_request_errors(body: bytes, code: ErrorCode) -> None:
    with pytest.raises(ContractViolation) as caught:
        decode_request(body, max_message_bytes=1024)
    assert caught.value.code == code and caught.value.description


def test_decode_request_accepts_a_valid_body() -> None:
    body = _request(np.zeros((1, 64), np.float32)).model_dump_json().encode()
    assert decode_request(body).model == "digits"


def test_deadline() -> None:
    now = datetime.now(UTC)
    check_deadline(_request(np.zeros((1, 64), np.float32), deadline=now + timedelta(minutes=1)))
    with pytest.raises(ContractViolation) as caught:
        check_deadline(_request(np.zeros((1, 64), np.float32), deadline=now - timedelta(seconds=1)))
    assert caught.value.code == ErrorCode.EXPIRED


@pytest.mark.parametrize(
    ("array", "code"),
    [
        (np.zeros((1, 63), np.float32), ErrorCode.BAD_SHAPE),
        (np.zeros((1, 64), np.float64), ErrorCode.BAD_DTYPE),
        (np.full((1, 64), np.nan, np.float32), ErrorCode.NON_FINITE),
        (np.zeros((9, 64), np.float32), ErrorCode.TOO_LARGE),
    ],
)
def test_request_arrays_checks_against_the_spec(array: np.ndarray, code: ErrorCode) -> None:
    with pytest.raises(ContractViolation) as caught:
        request_arrays(_request(array), SPEC)
    assert caught.value.code == code


def test_request_arrays_names_unknown_inputs() -> None:
    request = ScoreRequest(model="digits", inputs={"x": Tensor.from_numpy(np.zeros((1, 64), np.float32))})
    with pytest.raises(ContractViolation) as caught:
        request_arrays(request, SPEC)
    assert caught.value.code == ErrorCode.BAD_INPUT_NAME


def test_published_schema_matches_the_model() -> None:
    from qscore.contracts.__main__ import SCHEMA_DIR
    from qscore.contracts.messages import json_schemas

    for name, schema in json_schemas().items():
        assert json.loads((SCHEMA_DIR / name).read_text()) == schema


def test_docs_show_the_bad_input_table() -> None:
    from pathlib import Path

    from qscore.contracts import BAD_INPUT
    from qscore.contracts.errors import bad_input_markdown

    docs = (Path(__file__).resolve().parent.parent / "docs" / "contract.md").read_text()
    assert bad_input_markdown() in docs, "docs/contract.md: paste bad_input_markdown() as the table"
    assert set(BAD_INPUT) == set(ErrorCode)  # every code has a row


@pytest.mark.parametrize("deadline", [1_700_000_000, "1700000000", 1.5])
def test_a_numeric_deadline_is_a_schema_violation(deadline: object) -> None:
    body = json.loads(_request(np.zeros((1, 64), np.float32)).model_dump_json())
    body["deadline"] = deadline
    with pytest.raises(ContractViolation) as caught:
        decode_request(json.dumps(body).encode())
    assert caught.value.code == ErrorCode.SCHEMA_VIOLATION
    assert "ISO 8601" in caught.value.description


@pytest.mark.parametrize("b64", ["not base64!!", "AAA="])  # bad alphabet; 2 bytes, not whole FP32s
def test_invalid_b64_is_a_tensor_encoding_error(b64: str) -> None:
    request = ScoreRequest(model="digits", inputs={"pixels": Tensor(datatype="FP32", shape=[1, 64], b64=b64)})
    with pytest.raises(ContractViolation) as caught:
        request_arrays(request, SPEC)
    assert caught.value.code == ErrorCode.BAD_TENSOR_ENCODING


def test_b64_of_the_wrong_length_is_still_a_shape_error() -> None:
    tensor = Tensor.from_numpy(np.zeros((1, 32), np.float32), binary=True)
    request = ScoreRequest(model="digits", inputs={"pixels": tensor.model_copy(update={"shape": [1, 64]})})
    with pytest.raises(ContractViolation) as caught:
        request_arrays(request, SPEC)
    assert caught.value.code == ErrorCode.BAD_SHAPE


@pytest.mark.parametrize("binary", [False, True])
def test_assembled_reply_is_the_validated_reply(binary: bool) -> None:
    """ok_reply builds its reply without validation (qscore.contracts.messages.assembled): it must
    be the very reply validation makes of the same fields, in equality and in both body forms."""
    from qscore.contracts import ScoreReply, encode_binary_reply
    from qscore.scoring.core import ScoredItem, ScoringItem, ok_reply

    pixels = Tensor.from_numpy(np.zeros((1, 64), np.float32))
    request = ScoreRequest(model="digits", inputs={"pixels": pixels})
    item = ScoringItem(request_id="r1", request=request, arrays={}, received_at=10.0, enqueued_at=9.5)
    outputs = {"probabilities": np.full((1, 10), 0.1, np.float32), "label": np.array([[3]], np.int64)}
    scored = ScoredItem(item, outputs, model_version="2", batch_started_at=10.25, inference_ms=4)
    reply = ok_reply(scored, scored_by="w-1", binary=binary)
    validated = ScoreReply.model_validate(reply.model_dump())
    assert reply == validated
    assert reply.model_dump_json(exclude_none=True) == validated.model_dump_json(exclude_none=True)
    assert encode_binary_reply(reply) == encode_binary_reply(validated)
    assert isinstance(reply.timings.inference_ms, float)
    np.testing.assert_array_equal(reply.output_arrays()["label"], outputs["label"])
