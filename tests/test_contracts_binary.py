"""The binary body (docs/contract.md, "The binary form"): round trips, zero-copy decoding, and the
code every malformed body gets. Pure: no broker, no Triton (tests/test_binary_body.py runs the
form through the real parts)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import numpy as np
import pytest

from qscore.contracts import (
    BINARY_REPLY_CONTENT_TYPE,
    BINARY_REQUEST_CONTENT_TYPE,
    HEADER_LENGTH_PROPERTY,
    REPLY_CONTENT_TYPE,
    REQUEST_CONTENT_TYPE,
    ContractViolation,
    ErrorCode,
    ModelSpec,
    ReplyError,
    ReplyStatus,
    ScoreReply,
    ScoreRequest,
    Tensor,
    TensorSpec,
    Timings,
    accepts_binary_reply,
    binary_request_arrays,
    decode_binary_reply,
    decode_binary_request,
    encode_binary_reply,
    encode_binary_request,
    header_length_of,
)
from qscore.producer import OutgoingRequest, request_message
from qscore.producer.outcomes import parse_reply
from qscore.scoring import ReplyPolicy, RequestEnvelope, check_envelope, model_named_in
from qscore.transport import ReplyAddress
from qscore.transport.replies import reply_amqp_message

SPEC = ModelSpec(
    name="digits",
    versions=["1", "2"],
    max_batch_size=8,
    inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64])],
    outputs=[TensorSpec(name="label", datatype="INT64", dims=[1])],
)
MIXED = ModelSpec(
    name="mixed",
    versions=["1"],
    max_batch_size=4,
    inputs=[
        TensorSpec(name="ids", datatype="INT64", dims=[3]),
        TensorSpec(name="flags", datatype="BOOL", dims=[2]),
        TensorSpec(name="images", datatype="BYTES", dims=[1]),
    ],
    outputs=[TensorSpec(name="score", datatype="FP32", dims=[1])],
)
FIELDS = ScoreRequest.model_construct(model="digits", version="2", inputs={}, priority=3)


def _pixels(rows: int = 2) -> np.ndarray:
    return np.arange(rows * 64, dtype=np.float32).reshape(rows, 64)


def _arrays(body: bytes, length: int | None, spec: ModelSpec = SPEC) -> dict[str, np.ndarray]:
    return binary_request_arrays(decode_binary_request(body, length), spec)


def _code(body: bytes, length: object, spec: ModelSpec = SPEC, *, limit: int = 1 << 20) -> ErrorCode:
    with pytest.raises(ContractViolation) as caught:
        binary_request_arrays(
            decode_binary_request(body, header_length_of(length), max_message_bytes=limit), spec
        )
    assert caught.value.description
    return caught.value.code


def _body(header: dict[str, object], *tensors: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + b"".join(tensors), len(text)


def _header(name: str = "pixels", datatype: str = "FP32", shape: list[int] | None = None, size: int = 512):
    listed = {"name": name, "datatype": datatype, "shape": shape or [2, 64]}
    return {"model": "digits", "inputs": [listed | {"parameters": {"binary_data_size": size}}]}


def test_request_round_trip_is_a_view_of_the_body() -> None:
    pixels = _pixels(2)
    encoded = encode_binary_request(FIELDS, {"pixels": pixels})
    header = json.loads(encoded.body[: encoded.header_length])
    assert header["inputs"] == [
        {"name": "pixels", "datatype": "FP32", "shape": [2, 64], "parameters": {"binary_data_size": 512}}
    ]
    assert header["version"] == "2" and header["priority"] == 3
    assert len(encoded.body) == encoded.header_length + pixels.nbytes  # nothing but header and bytes
    decoded = decode_binary_request(encoded.body, encoded.header_length)
    assert decoded.request.model == "digits" and decoded.request.version == "2"
    arrays = binary_request_arrays(decoded, SPEC)
    np.testing.assert_array_equal(arrays["pixels"], pixels)
    assert arrays["pixels"].dtype == np.float32 and arrays["pixels"].shape == (2, 64)
    # zero-copy: the array reads the body's bytes (read-only), it is not a copy of them
    assert not arrays["pixels"].flags.writeable
    assert np.shares_memory(arrays["pixels"], np.frombuffer(encoded.body, dtype=np.uint8))


def test_every_datatype_round_trips_including_bytes_elements() -> None:
    ids = np.array([[1, -2, 3], [4, 5, 2**40]], dtype=np.int64)
    flags = np.array([[True, False], [False, True]])
    images = np.array([[b"\x89PNG..."], [b""]], dtype=object)
    encoded = encode_binary_request(
        ScoreRequest.model_construct(model="mixed", inputs={}), {"ids": ids, "flags": flags, "images": images}
    )
    arrays = _arrays(encoded.body, encoded.header_length, MIXED)
    np.testing.assert_array_equal(arrays["ids"], ids)
    np.testing.assert_array_equal(arrays["flags"], flags)
    assert arrays["images"].tolist() == [[b"\x89PNG..."], [b""]]
    # Triton's BYTES serialization: a 4-byte little-endian length before each element
    assert struct.pack("<I", 7) + b"\x89PNG..." + struct.pack("<I", 0) in encoded.body


def test_deadline_and_big_endian_arrays_travel_as_the_contract_says() -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    fields = ScoreRequest.model_construct(model="digits", inputs={}, deadline=deadline)
    big_endian = _pixels(1).astype(">f4")
    encoded = encode_binary_request(fields, {"pixels": big_endian})
    decoded = decode_binary_request(encoded.body, encoded.header_length)
    assert decoded.request.deadline == deadline
    np.testing.assert_array_equal(binary_request_arrays(decoded, SPEC)["pixels"], _pixels(1))


MALFORMED: dict[str, tuple[bytes, object, ErrorCode]] = {
    "no header length": (_body(_header(), _pixels().tobytes())[0], None, ErrorCode.INVALID_ENCODING),
    "header length not a number": (
        _body(_header(), _pixels().tobytes())[0],
        "ten",
        ErrorCode.INVALID_ENCODING,
    ),
    "header length past the body": (b'{"model":"digits"}', 999, ErrorCode.INVALID_ENCODING),
    "header length zero": (b'{"model":"digits"}', 0, ErrorCode.INVALID_ENCODING),
    "header not JSON": (b"\xff\xfe" + _pixels().tobytes(), 2, ErrorCode.INVALID_ENCODING),
    "header cut short": (*_body(_header(), _pixels().tobytes())[:1], 30, ErrorCode.INVALID_ENCODING),
    "header misses binary_data_size": (
        *_body({"model": "digits", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 64]}]}),
        ErrorCode.SCHEMA_VIOLATION,
    ),
    "header carries data": (
        *_body({**_header(), "inputs": [{**_header()["inputs"][0], "data": [1.0]}]}, _pixels().tobytes()),  # type: ignore[index]
        ErrorCode.SCHEMA_VIOLATION,
    ),
    "negative dimension": (*_body(_header(shape=[-2, 64]), _pixels().tobytes()), ErrorCode.SCHEMA_VIOLATION),
    "input listed twice": (
        *_body(
            {"model": "digits", "inputs": [_header(size=256)["inputs"][0]] * 2},  # type: ignore[index]
            _pixels().tobytes(),
        ),
        ErrorCode.SCHEMA_VIOLATION,
    ),
    "sizes add up to more than the body": (
        *_body(_header(size=600), _pixels().tobytes()),
        ErrorCode.BAD_TENSOR_ENCODING,
    ),
    "bytes after the tensors": (
        *_body(_header(), _pixels().tobytes() + b"\0"),
        ErrorCode.BAD_TENSOR_ENCODING,
    ),
    "bytes not whole elements": (
        *_body(_header(size=510), _pixels().tobytes()[:510]),
        ErrorCode.BAD_TENSOR_ENCODING,
    ),
    "bytes do not fill the shape": (
        *_body(_header(shape=[3, 64]), _pixels().tobytes()),
        ErrorCode.BAD_SHAPE,
    ),
    "shape not the model's": (*_body(_header(shape=[2, 32, 2]), _pixels().tobytes()), ErrorCode.BAD_SHAPE),
    "datatype not the model's": (*_body(_header(datatype="FP64"), _pixels().tobytes()), ErrorCode.BAD_DTYPE),
    "unknown datatype": (*_body(_header(datatype="FP8"), _pixels().tobytes()), ErrorCode.BAD_DTYPE),
    "input name not the model's": (
        *_body(_header(name="image"), _pixels().tobytes()),
        ErrorCode.BAD_INPUT_NAME,
    ),
    "more rows than max_batch_size": (
        *_body(_header(shape=[9, 64], size=9 * 256), _pixels(9).tobytes()),
        ErrorCode.TOO_LARGE,
    ),
    "NaN": (
        *_body(_header(), np.full((2, 64), np.nan, np.float32).tobytes()),
        ErrorCode.NON_FINITE,
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_body_gets_its_code(case: str) -> None:
    body, length, code = MALFORMED[case]
    assert _code(body, length) == code


def test_a_body_over_the_limit_is_too_large() -> None:
    encoded = encode_binary_request(FIELDS, {"pixels": _pixels(8)})
    assert _code(encoded.body, encoded.header_length, limit=1024) == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    ("elements", "code"),
    [
        (struct.pack("<I", 50) + b"short", ErrorCode.BAD_TENSOR_ENCODING),  # a length past the end
        (struct.pack("<I", 1) + b"a", ErrorCode.BAD_SHAPE),  # one element where the shape needs two
        (struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b" + b"xx", ErrorCode.BAD_SHAPE),  # left over
    ],
)
def test_malformed_bytes_elements(elements: bytes, code: ErrorCode) -> None:
    ids = struct.pack("<6q", *range(6))
    flags = bytes([1, 0, 0, 1])
    listed = [
        ("ids", "INT64", [2, 3], ids),
        ("flags", "BOOL", [2, 2], flags),
        ("images", "BYTES", [2, 1], elements),
    ]
    header = {
        "model": "mixed",
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, d, s, raw in listed
        ],
    }
    body, length = _body(header, *(raw for *_, raw in listed))
    assert _code(body, length, MIXED) == code


def test_header_length_comes_as_int_bytes_or_text() -> None:
    assert header_length_of(12) == header_length_of(b"12") == header_length_of(" 12 ") == 12
    assert header_length_of(None) is None
    for bad in (True, "-3", 1.5, b"x"):
        with pytest.raises(ContractViolation):
            header_length_of(bad)


def test_reply_round_trip_ok_and_error() -> None:
    probabilities = np.linspace(0, 1, 20, dtype=np.float32).reshape(2, 10)
    ok = ScoreReply(
        request_id="r-1",
        status=ReplyStatus.OK,
        model="digits",
        model_version="2",
        outputs={
            "probabilities": Tensor.from_numpy(probabilities, binary=True),
            "label": Tensor.from_numpy(np.array([[3], [7]], np.int64)),  # data lists work too
        },
        timings=Timings(queue_wait_ms=1.5, batch_wait_ms=2.0, inference_ms=3.25, total_ms=9.0),
        scored_by="worker-1",
    )
    encoded = encode_binary_reply(ok)
    assert len(encoded.body) == encoded.header_length + probabilities.nbytes + 2 * 8
    header = json.loads(encoded.body[: encoded.header_length])
    assert header["timings"]["inference_ms"] == 3.25 and header["model_version"] == "2"
    back = decode_binary_reply(encoded.body, encoded.header_length)
    assert back.model_dump(exclude={"outputs"}) == ok.model_dump(exclude={"outputs"})
    np.testing.assert_array_equal(back.output_arrays()["probabilities"], probabilities)
    assert back.output_arrays()["label"].tolist() == [[3], [7]]
    error = ScoreReply(
        request_id="r-2",
        status=ReplyStatus.ERROR,
        model="digits",
        error=ReplyError(code=ErrorCode.EXPIRED, message="too late"),
    )
    encoded = encode_binary_reply(error)
    assert encoded.header_length == len(encoded.body)  # a header alone
    assert decode_binary_reply(encoded.body, encoded.header_length) == error
    assert (
        parse_reply(
            encoded.body, content_type=BINARY_REPLY_CONTENT_TYPE, header_length=str(encoded.header_length)
        )
        == error
    )
    with pytest.raises(ValueError):
        parse_reply(encoded.body, content_type=BINARY_REPLY_CONTENT_TYPE, header_length=None)
    with pytest.raises(ValueError):
        decode_binary_reply(encoded.body + b"x", encoded.header_length)
    short = encode_binary_reply(
        ok.model_copy(update={"outputs": {"label": Tensor.from_numpy(np.zeros((2, 1), np.int32))}})
    )
    header = json.loads(short.body[: short.header_length])
    header["outputs"][0]["datatype"] = "INT64"  # 8 bytes of INT32 where two INT64 need 16
    text = json.dumps(header).encode()
    with pytest.raises(ValueError, match="bytes are not"):
        decode_binary_reply(text + short.body[short.header_length :], len(text))


def test_binary_requests_pass_the_envelope_and_accept_asks_for_binary_replies() -> None:
    policy = ReplyPolicy.create("scoring-replies")
    envelope = RequestEnvelope(
        message_id="m", reply_to_session_id="s", content_type=BINARY_REQUEST_CONTENT_TYPE + "; x=1"
    )
    assert check_envelope(envelope, policy).binary_reply is False
    asked = RequestEnvelope(
        message_id="m",
        reply_to_session_id="s",
        content_type=REQUEST_CONTENT_TYPE,
        accept=BINARY_REPLY_CONTENT_TYPE,
    )
    assert check_envelope(asked, policy).binary_reply is True
    assert accepts_binary_reply(f"{REPLY_CONTENT_TYPE}, {BINARY_REPLY_CONTENT_TYPE}")
    assert not accepts_binary_reply(REPLY_CONTENT_TYPE) and not accepts_binary_reply(None)


def test_a_binary_reply_message_carries_its_header_length() -> None:
    reply = ScoreReply(request_id="r", status=ReplyStatus.OK, model="digits", outputs={})
    binary = reply_amqp_message(ReplyAddress("q", "s", traceparent="tp", binary_reply=True), reply)
    assert binary.properties is not None and binary.application_properties is not None
    assert binary.properties.content_type == BINARY_REPLY_CONTENT_TYPE
    length = binary.application_properties[HEADER_LENGTH_PROPERTY]
    body = b"".join(binary.body)
    assert parse_reply(body, content_type=BINARY_REPLY_CONTENT_TYPE, header_length=length) == reply
    assert binary.application_properties["traceparent"] == "tp"
    plain = reply_amqp_message(ReplyAddress("q", "s"), reply)
    assert plain.properties is not None and plain.properties.content_type == REPLY_CONTENT_TYPE
    assert plain.application_properties is None


def test_the_producer_sends_binary_by_default_and_json_on_request() -> None:
    pixels = _pixels(2)
    outgoing = OutgoingRequest.build("digits", {"pixels": pixels}, version="2")
    message = request_message(
        outgoing, reply_to="scoring-replies", reply_to_session_id="s", accept=BINARY_REPLY_CONTENT_TYPE
    )
    assert message.content_type == BINARY_REQUEST_CONTENT_TYPE
    properties = message.application_properties or {}
    length = properties[HEADER_LENGTH_PROPERTY]
    assert properties["accept"] == BINARY_REPLY_CONTENT_TYPE
    body = b"".join(message.body)
    assert len(body) - length == pixels.nbytes
    np.testing.assert_array_equal(_arrays(body, int(length))["pixels"], pixels)  # type: ignore[arg-type]
    assert model_named_in(body, content_type=BINARY_REQUEST_CONTENT_TYPE, header_length=length) == "digits"
    assert model_named_in(b"\0", content_type=BINARY_REQUEST_CONTENT_TYPE, header_length=None) == ""
    # the JSON body of the same request (a request-batch item's) carries compact b64 tensors
    as_json = ScoreRequest.model_validate_json(outgoing.json_body())
    np.testing.assert_array_equal(as_json.inputs["pixels"].to_numpy(), pixels)
    json_request = OutgoingRequest.build("digits", {"pixels": pixels}, body_format="json")
    json_message = request_message(json_request, reply_to="scoring-replies", reply_to_session_id="s")
    assert json_message.content_type == REQUEST_CONTENT_TYPE and json_message.application_properties is None
    assert json_request.body() == json_request.json_body() and json_request.header_length is None
