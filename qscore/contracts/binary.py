"""The binary body (schema version 1): a short JSON header, then the tensors' raw bytes.

The shape of Triton's HTTP binary tensor extension: the header lists each tensor with its name,
datatype, shape and `parameters.binary_data_size`; the tensors' bytes follow the header in the
order the header lists them, with nothing between them. The header's length in bytes travels in
the application property `inference-header-content-length` (Triton's HTTP header of that name).
A numeric tensor is its elements' little-endian bytes, row-major; a `BYTES` tensor is each
element as a 4-byte little-endian length followed by its bytes (Triton's serialization).

A request in this form is `application/vnd.qscore.request.v1+binary`; a producer that wants its
replies in the same form sets the application property `accept` to
`application/vnd.qscore.reply.v1+binary`. See docs/contract.md ("The binary form").

Decoding is zero-copy: a numeric input is an `np.frombuffer` view of the body.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qscore.contracts.errors import ContractViolation, ErrorCode
from qscore.contracts.messages import (
    SCHEMA_VERSION,
    IsoDateTime,
    ReplyError,
    ReplyStatus,
    ScoreReply,
    ScoreRequest,
    Tensor,
    Timings,
    assembled,
)
from qscore.contracts.model_spec import BYTES, NUMPY_TO_TRITON, TRITON_TO_NUMPY, ModelSpec
from qscore.contracts.validation import (
    DEFAULT_MAX_MESSAGE_BYTES,
    check_batch_sizes,
    check_declared,
    check_finite,
    check_input_names,
    violation_from,
)

BINARY_REQUEST_CONTENT_TYPE = "application/vnd.qscore.request.v1+binary"
BINARY_REPLY_CONTENT_TYPE = "application/vnd.qscore.reply.v1+binary"
HEADER_LENGTH_PROPERTY = "inference-header-content-length"
ACCEPT_PROPERTY = "accept"

_ELEMENT_LENGTH = struct.Struct("<I")


class BinaryData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    binary_data_size: int = Field(
        ge=0, description="How many of the bytes after the header are this tensor's"
    )


class BinaryTensor(BaseModel):
    """One tensor of a binary body, as the header lists it (its bytes follow the header)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    datatype: str = Field(description="Triton datatype, e.g. FP32, INT64, BYTES")
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        description="Full shape including the leading batch dimension"
    )
    parameters: BinaryData


class BinaryRequestHeader(BaseModel):
    """The JSON header of a binary request body: a `ScoreRequest` whose inputs are listed, not carried."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    model: str = Field(min_length=1, max_length=128)
    version: str | None = Field(
        default=None, description="A version number, or a registry label such as 'production' (default)"
    )
    inputs: list[BinaryTensor] = Field(min_length=1)
    deadline: IsoDateTime | None = Field(
        default=None, description="Absolute UTC time after which not to score (ISO 8601 date-time)"
    )
    priority: int = Field(default=0, ge=0, le=9)


class BinaryReplyHeader(BaseModel):
    """The JSON header of a binary reply body: a `ScoreReply` whose outputs are listed, not carried."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    request_id: str
    status: ReplyStatus
    model: str
    model_version: str | None = None
    outputs: list[BinaryTensor] | None = None
    timings: Timings = Field(default_factory=Timings)
    error: ReplyError | None = None
    scored_by: str | None = Field(default=None, description="worker or function instance that scored it")


@dataclass(frozen=True)
class BinaryBody:
    """A body in the binary form and its header's length (the application property's value)."""

    body: bytes
    header_length: int


@dataclass(frozen=True)
class BinaryRequest:
    """A decoded binary request: its fields (no inputs: they are here as views of the body)."""

    request: ScoreRequest
    tensors: dict[str, tuple[BinaryTensor, memoryview]]


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_binary_request(content_type: str | None) -> bool:
    return _media_type(content_type) == BINARY_REQUEST_CONTENT_TYPE


def is_binary_reply(content_type: str | None) -> bool:
    return _media_type(content_type) == BINARY_REPLY_CONTENT_TYPE


def accepts_binary_reply(accept: str | None) -> bool:
    """Whether a request's `accept` property asks for binary replies (a comma-separated list of
    media types, as HTTP's Accept)."""
    return bool(accept) and any(is_binary_reply(each) for each in str(accept).split(","))


def header_length_of(value: object) -> int | None:
    """The `inference-header-content-length` property's value as an int (None when absent); the
    SDK and the Functions host hand it back as an int, bytes or text."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = value.decode("ascii", "replace")
    if isinstance(value, bool):
        raise _no_header_length(f"{value!r} is not a byte count")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise _no_header_length(f"{value!r} is not a byte count")


def _no_header_length(why: str) -> ContractViolation:
    return ContractViolation(
        ErrorCode.INVALID_ENCODING,
        f"application property {HEADER_LENGTH_PROPERTY!r}: {why}; set it to the length in bytes of "
        "the body's JSON header",
    )


def _split(body: bytes, header_length: int | None, *, what: str) -> tuple[memoryview, memoryview]:
    """(header, tensor bytes) of a binary body."""
    if header_length is None:
        raise _no_header_length(f"missing on a {what}")
    if not 0 < header_length <= len(body):
        raise _no_header_length(f"{header_length} is not within the body's {len(body)} bytes")
    view = memoryview(body)
    return view[:header_length], view[header_length:]


def _segments(tensors: list[BinaryTensor], data: memoryview) -> dict[str, tuple[BinaryTensor, memoryview]]:
    """Each tensor's bytes, in header order; the sizes must add up to the bytes after the header."""
    declared = sum(tensor.parameters.binary_data_size for tensor in tensors)
    if declared != len(data):
        raise ContractViolation(
            ErrorCode.BAD_TENSOR_ENCODING,
            f"the header's binary_data_size values add up to {declared} bytes, but {len(data)} bytes "
            "follow the header",
        )
    found: dict[str, tuple[BinaryTensor, memoryview]] = {}
    offset = 0
    for tensor in tensors:
        if tensor.name in found:
            raise ContractViolation(
                ErrorCode.SCHEMA_VIOLATION, f"inputs: {tensor.name!r} is listed twice; list each input once"
            )
        size = tensor.parameters.binary_data_size
        found[tensor.name] = (tensor, data[offset : offset + size])
        offset += size
    return found


def decode_binary_request(
    body: bytes, header_length: int | None, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> BinaryRequest:
    """Parse a binary request body (the header and where each input's bytes are; no copy of
    them); raises ContractViolation with a reason a person can act on."""
    if len(body) > max_message_bytes:
        raise ContractViolation(
            ErrorCode.TOO_LARGE, f"body is {len(body)} bytes; the limit is {max_message_bytes}"
        )
    header_bytes, data = _split(body, header_length, what="binary request")
    try:
        header = BinaryRequestHeader.model_validate_json(header_bytes.tobytes())
    except ValidationError as exc:
        raise violation_from(exc, what="binary request header") from None
    # assembled: the header was validated just now, field by field as a ScoreRequest's.
    request = assembled(
        ScoreRequest,
        {
            "schema_version": header.schema_version,
            "model": header.model,
            "version": header.version,
            "inputs": {},  # the inputs are the views in `tensors`
            "deadline": header.deadline,
            "priority": header.priority,
        },
    )
    return BinaryRequest(request=request, tensors=_segments(header.inputs, data))


def binary_request_arrays(decoded: BinaryRequest, spec: ModelSpec) -> dict[str, np.ndarray]:
    """The inputs as arrays (numeric ones are read-only views of the body), each checked against
    `spec` in the order and with the codes `request_arrays` gives a JSON request."""
    names = check_input_names(decoded.tensors, spec)
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        tensor, raw = decoded.tensors[name]
        check_declared(name, tensor.datatype, tensor.shape, spec)
        array = _array(name, tensor, raw)
        check_finite(name, array, spec)
        arrays[name] = array
    check_batch_sizes(arrays, spec)
    return arrays


def _element_count(shape: list[int]) -> int:
    return math.prod(shape)  # Python ints: no int64 wrap-around, and a tenth of np.prod's cost


def _array(name: str, tensor: BinaryTensor, raw: memoryview) -> np.ndarray:
    count = _element_count(tensor.shape)
    if tensor.datatype == BYTES:
        return _bytes_elements(name, raw, count).reshape(tensor.shape)
    dtype = TRITON_TO_NUMPY[tensor.datatype]  # the datatype is the model's (checked)
    if len(raw) % dtype.itemsize:
        raise ContractViolation(
            ErrorCode.BAD_TENSOR_ENCODING,
            f"input {name!r}: {len(raw)} bytes are not a whole number of {dtype.itemsize}-byte "
            f"{tensor.datatype} elements",
        )
    if len(raw) != count * dtype.itemsize:
        raise ContractViolation(
            ErrorCode.BAD_SHAPE,
            f"input {name!r}: {len(raw)} bytes hold {len(raw) // dtype.itemsize} elements but shape "
            f"{tensor.shape} needs {count} ({count * dtype.itemsize} bytes)",
        )
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(tensor.shape)
    return array.astype(dtype, copy=False)  # a view on little-endian machines


def _bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    flat = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + _ELEMENT_LENGTH.size > len(raw):
            raise ContractViolation(
                ErrorCode.BAD_SHAPE,
                f"input {name!r}: the bytes end after {index} BYTES elements; its shape needs {count}",
            )
        (length,) = _ELEMENT_LENGTH.unpack_from(raw, offset)
        offset += _ELEMENT_LENGTH.size
        if offset + length > len(raw):
            raise ContractViolation(
                ErrorCode.BAD_TENSOR_ENCODING,
                f"input {name!r}: BYTES element {index} says {length} bytes; "
                f"only {len(raw) - offset} are left",
            )
        flat[index] = raw[offset : offset + length].tobytes()
        offset += length
    if offset != len(raw):
        raise ContractViolation(
            ErrorCode.BAD_SHAPE,
            f"input {name!r}: {len(raw) - offset} bytes are left after the {count} BYTES elements its "
            "shape names",
        )
    return flat


def tensor_bytes(array: np.ndarray) -> tuple[str, bytes]:
    """An array's Triton datatype and its bytes in the binary form."""
    datatype = NUMPY_TO_TRITON.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise ValueError(f"dtype {array.dtype} has no Triton datatype")
    if datatype == BYTES:
        parts = [bytes(element) for element in array.ravel()]
        return datatype, b"".join(_ELEMENT_LENGTH.pack(len(part)) + part for part in parts)
    return datatype, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _assemble(
    header: dict[str, Any], listed: str, tensors: list[tuple[str, str, list[int], bytes]]
) -> BinaryBody:
    header[listed] = [
        {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
        for name, datatype, shape, raw in tensors
    ]
    text = json.dumps(header, separators=(",", ":")).encode()
    return BinaryBody(b"".join([text, *(raw for *_, raw in tensors)]), len(text))


def encode_binary_request(request: ScoreRequest, arrays: Mapping[str, np.ndarray]) -> BinaryBody:
    """The binary body of `request` (its fields) with `arrays` as its inputs."""
    header = request.model_dump(mode="json", exclude_none=True, exclude={"inputs"})
    tensors = []
    for name, array in arrays.items():
        datatype, raw = tensor_bytes(np.asarray(array))
        tensors.append((name, datatype, list(np.shape(array)), raw))
    return _assemble(header, "inputs", tensors)


def encode_binary_reply(reply: ScoreReply) -> BinaryBody:
    """A reply in the binary form: its fields in the header, its outputs' bytes after it (an
    error reply is a header alone)."""
    header = reply.model_dump(mode="json", exclude_none=True, exclude={"outputs"})
    if reply.outputs is None:
        text = json.dumps(header, separators=(",", ":")).encode()
        return BinaryBody(text, len(text))
    tensors = [
        (name, tensor.datatype, list(tensor.shape), _reply_tensor_bytes(tensor))
        for name, tensor in reply.outputs.items()
    ]
    return _assemble(header, "outputs", tensors)


def _reply_tensor_bytes(tensor: Tensor) -> bytes:
    if tensor.datatype != BYTES and tensor.b64 is not None:  # the worker builds these: no array needed
        return base64.b64decode(tensor.b64)
    return tensor_bytes(tensor.to_numpy())[1]


def decode_binary_reply(body: bytes, header_length: int | None) -> ScoreReply:
    """A binary reply body as a ScoreReply (outputs as compact `b64` tensors; `output_arrays()`
    decodes them). ValueError when the body is not a binary reply."""
    try:
        header_bytes, data = _split(body, header_length, what="binary reply")
        header = BinaryReplyHeader.model_validate_json(header_bytes.tobytes())
        segments = _segments(header.outputs or [], data)
    except ContractViolation as exc:
        raise ValueError(exc.description) from None
    outputs = None
    if header.outputs is not None:
        outputs = {name: _reply_tensor(name, tensor, raw) for name, (tensor, raw) in segments.items()}
    # The header was validated as BinaryReplyHeader, whose other fields are ScoreReply's: dumping
    # and validating them again was half of a producer's reply decoding.
    fields = {name: getattr(header, name) for name in _REPLY_FIELDS}
    return ScoreReply.model_construct(**fields, outputs=outputs)


_REPLY_FIELDS = tuple(name for name in ScoreReply.model_fields if name != "outputs")


def _reply_tensor(name: str, tensor: BinaryTensor, raw: memoryview) -> Tensor:
    if tensor.datatype == BYTES:
        try:
            elements = _bytes_elements(name, raw, _element_count(tensor.shape))
        except ContractViolation as exc:
            raise ValueError(exc.description) from None
        data: list[float | int | bool | str] = [base64.b64encode(each).decode() for each in elements]
        return Tensor(datatype=tensor.datatype, shape=tensor.shape, data=data)
    dtype = TRITON_TO_NUMPY.get(tensor.datatype)
    if dtype is None or len(raw) != _element_count(tensor.shape) * dtype.itemsize:
        raise ValueError(f"output {name!r}: {len(raw)} bytes are not a {tensor.datatype} {tensor.shape}")
    # model_construct: datatype, shape and byte count were checked above (as Tensor.from_numpy does)
    return Tensor.model_construct(
        datatype=tensor.datatype, shape=tensor.shape, b64=base64.b64encode(raw).decode()
    )
