"""The request/reply message bodies (schema version 1).

A request travels as one Service Bus message: the request id is the message's
`message_id`, the reply address is `reply_to` + `reply_to_session_id`, and the W3C
`traceparent` rides in application properties. The body is the JSON document below.
Replies carry `correlation_id` = request id and `session_id` = the request's
`reply_to_session_id`. See docs/contract.md.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from qscore.contracts.errors import ErrorCode
from qscore.contracts.model_spec import BYTES, NUMPY_TO_TRITON, TRITON_TO_NUMPY

__all__ = ["ErrorCode", "ReplyError", "ReplyStatus", "ScoreReply", "ScoreRequest", "Tensor", "Timings"]

SCHEMA_VERSION: Literal["1"] = "1"
REQUEST_CONTENT_TYPE = "application/vnd.qscore.request.v1+json"
REPLY_CONTENT_TYPE = "application/vnd.qscore.reply.v1+json"
PRODUCTION_LABEL = "production"


_M = TypeVar("_M", bound=BaseModel)


def assembled(cls: type[_M], values: dict[str, Any]) -> _M:
    """An instance of `cls` from values that are valid by construction, as `model_construct`
    makes it (the keys given are its set fields) but about twice as fast: that one walks every
    field in Python, and it ran several times per reply on the worker's reply path. `values`
    names every field of `cls`, in its order (serialization reads them by name)."""
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


class TensorEncodingError(ValueError):
    """A tensor's `b64` is not base64, or its bytes are not whole elements of its datatype."""


class Tensor(BaseModel):
    """A named tensor: nested-free `data` list (row-major) or `b64`, its little-endian raw bytes.

    `b64` is the compact encoding for large tensors (about 4x smaller than a JSON number list).
    A `BYTES` tensor (encoded images, documents) carries `data`: one base64 string per element.
    """

    model_config = ConfigDict(extra="forbid")

    datatype: str = Field(description="Triton datatype, e.g. FP32, INT64")
    shape: list[int] = Field(description="Full shape including the leading batch dimension")
    data: list[float | int | bool | str] | None = None
    b64: str | None = None

    @model_validator(mode="after")
    def _one_encoding(self) -> Tensor:
        if (self.data is None) == (self.b64 is None):
            raise ValueError("a tensor carries exactly one of 'data' or 'b64'")
        if any(dim < 0 for dim in self.shape):
            raise ValueError("tensor shape dimensions must be >= 0")
        return self

    def element_count(self) -> int:
        return math.prod(self.shape)  # exact, and a tenth of np.prod's cost for a short list

    @classmethod
    def from_numpy(cls, array: np.ndarray, *, binary: bool = False) -> Tensor:
        """Encode an array; `binary=True` uses the compact base64 form."""
        datatype = NUMPY_TO_TRITON[array.dtype]
        # assembled: an array's dtype and shape are valid by construction, and skipping
        # per-element validation matters on the worker's reply path.
        shape = list(array.shape)
        if datatype == BYTES:
            elements = [base64.b64encode(bytes(item)).decode() for item in array.ravel()]
            return assembled(cls, {"datatype": datatype, "shape": shape, "data": elements, "b64": None})
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            b64 = base64.b64encode(raw).decode()
            return assembled(cls, {"datatype": datatype, "shape": shape, "data": None, "b64": b64})
        data = array.ravel().tolist()
        return assembled(cls, {"datatype": datatype, "shape": shape, "data": data, "b64": None})

    def to_numpy(self) -> np.ndarray:
        """Decode into an array of the declared dtype and shape (ValueError if they disagree)."""
        dtype = TRITON_TO_NUMPY.get(self.datatype)
        if dtype is None:
            raise ValueError(f"unsupported datatype {self.datatype!r}")
        if self.datatype == BYTES:
            flat = _decode_bytes_elements(self)
        elif self.b64 is not None:
            flat = _decode_b64(self.b64, dtype)
        else:
            try:
                flat = np.asarray(self.data, dtype=dtype)
            except ValueError as exc:  # a string among the numbers
                raise TensorEncodingError(
                    f"data holds a value that is not a {self.datatype}: {exc}"
                ) from None
        if flat.size != self.element_count():
            raise ValueError(
                f"tensor holds {flat.size} elements but shape {self.shape} needs {self.element_count()}"
            )
        return flat.reshape(self.shape)


def _decode_bytes_elements(tensor: Tensor) -> np.ndarray:
    """A BYTES tensor's elements (each a base64 string in `data`) as an object array of bytes."""
    if tensor.data is None:
        raise TensorEncodingError("a BYTES tensor carries `data`: one base64 string per element")
    flat = np.empty(len(tensor.data), dtype=object)
    for index, element in enumerate(tensor.data):
        if not isinstance(element, str):
            raise TensorEncodingError(
                f"BYTES element {index} is {type(element).__name__}, not a base64 string"
            )
        try:
            flat[index] = base64.b64decode(element, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TensorEncodingError(f"BYTES element {index} is not valid base64: {exc}") from None
    return flat


def _decode_b64(text: str, dtype: np.dtype[Any]) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TensorEncodingError(f"b64 is not valid base64: {exc}") from None
    if len(raw) % dtype.itemsize:
        raise TensorEncodingError(
            f"b64 holds {len(raw)} bytes, not a whole number of {dtype.itemsize}-byte elements"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


def _iso_datetime(value: Any) -> Any:
    """The schema says date-time; lax parsing would take a number (or a string of digits) as a
    Unix time, so a producer's seconds-vs-milliseconds slip would pass unnoticed."""
    if isinstance(value, datetime) or value is None:
        return value
    if not isinstance(value, str) or value.strip().lstrip("-").replace(".", "", 1).isdigit():
        raise ValueError(f"must be an ISO 8601 date-time string such as 2025-01-01T12:00:00Z, not {value!r}")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


class ScoreRequest(BaseModel):
    """Body of a scoring request."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    model: str = Field(min_length=1, max_length=128)
    version: str | None = Field(
        default=None, description="A version number, or a registry label such as 'production' (default)"
    )
    inputs: dict[str, Tensor] = Field(min_length=1)
    deadline: IsoDateTime | None = Field(
        default=None, description="Absolute UTC time after which not to score (ISO 8601 date-time)"
    )
    priority: int = Field(default=0, ge=0, le=9)


class ReplyStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


class ReplyError(BaseModel):
    code: ErrorCode
    message: str


class Timings(BaseModel):
    """Milliseconds per stage. queue_wait: enqueued -> received; batch_wait: received -> batch sent
    to Triton; inference: the Triton call; total: enqueued -> reply sent."""

    queue_wait_ms: float = 0.0
    batch_wait_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


class ScoreReply(BaseModel):
    """Body of a reply; `request_id` repeats the message's correlation id for consumers that lose headers."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    request_id: str
    status: ReplyStatus
    model: str
    model_version: str | None = None
    outputs: dict[str, Tensor] | None = None
    timings: Timings = Field(default_factory=Timings)
    error: ReplyError | None = None
    scored_by: str | None = Field(default=None, description="worker or function instance that scored it")

    def output_arrays(self) -> dict[str, np.ndarray]:
        return {name: tensor.to_numpy() for name, tensor in (self.outputs or {}).items()}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schema documents, keyed by file name."""
    from qscore.contracts.batch import ScoreRequestBatch  # it builds on the models above
    from qscore.contracts.binary import BinaryReplyHeader, BinaryRequestHeader
    from qscore.contracts.reply_batch import ScoreReplyBatch

    return {
        "score-request.v1.json": ScoreRequest.model_json_schema(),
        "score-request-batch.v1.json": ScoreRequestBatch.model_json_schema(),
        "score-reply.v1.json": ScoreReply.model_json_schema(),
        "score-reply-batch.v1.json": ScoreReplyBatch.model_json_schema(),
        "score-request-binary-header.v1.json": BinaryRequestHeader.model_json_schema(),
        "score-reply-binary-header.v1.json": BinaryReplyHeader.model_json_schema(),
    }
