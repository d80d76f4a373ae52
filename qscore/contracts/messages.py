"""The request/reply message bodies (schema version 1).

A request travels as one Service Bus message: the request id is the message's
`message_id`, the reply address is `reply_to` + `reply_to_session_id`, and the W3C
`traceparent` rides in application properties. The body is the JSON document below.
Replies carry `correlation_id` = request id and `session_id` = the request's
`reply_to_session_id`. See docs/contract.md.
"""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qscore.contracts.model_spec import NUMPY_TO_TRITON, TRITON_TO_NUMPY

SCHEMA_VERSION: Literal["1"] = "1"
REQUEST_CONTENT_TYPE = "application/vnd.qscore.request.v1+json"
REPLY_CONTENT_TYPE = "application/vnd.qscore.reply.v1+json"
PRODUCTION_LABEL = "production"


class Tensor(BaseModel):
    """A named tensor: nested-free `data` list (row-major) or `b64`, its little-endian raw bytes.

    `b64` is the compact encoding for large tensors (about 4x smaller than a JSON number list).
    """

    model_config = ConfigDict(extra="forbid")

    datatype: str = Field(description="Triton datatype, e.g. FP32, INT64")
    shape: list[int] = Field(description="Full shape including the leading batch dimension")
    data: list[float | int | bool] | None = None
    b64: str | None = None

    @model_validator(mode="after")
    def _one_encoding(self) -> Tensor:
        if (self.data is None) == (self.b64 is None):
            raise ValueError("a tensor carries exactly one of 'data' or 'b64'")
        if any(dim < 0 for dim in self.shape):
            raise ValueError("tensor shape dimensions must be >= 0")
        return self

    def element_count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @classmethod
    def from_numpy(cls, array: np.ndarray, *, binary: bool = False) -> Tensor:
        """Encode an array; `binary=True` uses the compact base64 form."""
        datatype = NUMPY_TO_TRITON[array.dtype]
        # model_construct: an array's dtype and shape are valid by construction, and skipping
        # per-element validation matters on the worker's reply path.
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            return cls.model_construct(
                datatype=datatype, shape=list(array.shape), b64=base64.b64encode(raw).decode()
            )
        return cls.model_construct(datatype=datatype, shape=list(array.shape), data=array.ravel().tolist())

    def to_numpy(self) -> np.ndarray:
        """Decode into an array of the declared dtype and shape (ValueError if they disagree)."""
        dtype = TRITON_TO_NUMPY.get(self.datatype)
        if dtype is None:
            raise ValueError(f"unsupported datatype {self.datatype!r}")
        if self.b64 is not None:
            raw = base64.b64decode(self.b64, validate=True)
            flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        else:
            flat = np.asarray(self.data, dtype=dtype)
        if flat.size != self.element_count():
            raise ValueError(
                f"tensor holds {flat.size} elements but shape {self.shape} needs {self.element_count()}"
            )
        return flat.reshape(self.shape)


class ScoreRequest(BaseModel):
    """Body of a scoring request."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = SCHEMA_VERSION
    model: str = Field(min_length=1, max_length=128)
    version: str | None = Field(
        default=None, description="A version number, or a registry label such as 'production' (default)"
    )
    inputs: dict[str, Tensor] = Field(min_length=1)
    deadline: datetime | None = Field(default=None, description="Absolute UTC time after which not to score")
    priority: int = Field(default=0, ge=0, le=9)


class ReplyStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


class ErrorCode(StrEnum):
    """Stable error codes; each is also a dead-letter reason where the message is dead-lettered."""

    INVALID_ENCODING = "invalid_encoding"  # not UTF-8 / not JSON
    SCHEMA_VIOLATION = "schema_violation"  # JSON that does not match the request schema
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_VERSION = "unknown_version"
    BAD_INPUT_NAME = "bad_input_name"
    BAD_DTYPE = "bad_dtype"
    BAD_SHAPE = "bad_shape"
    NON_FINITE = "non_finite"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    INFERENCE_FAILED = "inference_failed"


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
    return {
        "score-request.v1.json": ScoreRequest.model_json_schema(),
        "score-reply.v1.json": ScoreReply.model_json_schema(),
    }
