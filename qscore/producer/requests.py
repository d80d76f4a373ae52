"""Build scoring requests from numpy arrays and turn them into Service Bus messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
from azure.servicebus import ServiceBusMessage

from qscore.claimcheck.reference import CLAIM_CHECK_CONTENT_TYPE
from qscore.contracts import (
    ACCEPT_PROPERTY,
    BINARY_REQUEST_CONTENT_TYPE,
    HEADER_LENGTH_PROPERTY,
    REQUEST_BATCH_CONTENT_TYPE,
    REQUEST_CONTENT_TYPE,
    BinaryBody,
    ScoreRequest,
    Tensor,
    encode_binary_request,
)
from qscore.producer.settings import BodyFormat


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class OutgoingRequest:
    """A request and the id it travels under (the message id; replies carry it as correlation id).

    `body_format` binary (the default): the body is the binary form, a JSON header and the
    tensors' raw bytes, built from `arrays` (else from `request`'s tensors). `request` is the same
    request as JSON, what a request-batch item (coalescing) carries."""

    request_id: str
    request: ScoreRequest
    body_format: BodyFormat = "binary"
    arrays: Mapping[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        binary: bool = False,
        deadline: datetime | None = None,
        priority: int = 0,
        request_id: str | None = None,
        body_format: BodyFormat = "binary",
    ) -> OutgoingRequest:
        """Encode `inputs` (each with its leading batch dimension). `body_format` picks the body's
        form; `binary` makes the JSON tensors compact base64 (a binary body's JSON fallback, a
        request-batch item, always is)."""
        if not inputs:
            raise ValueError("a request needs at least one input tensor")
        arrays = {name: np.asarray(array) for name, array in inputs.items()}
        compact = binary or body_format == "binary"
        tensors = {name: Tensor.from_numpy(array, binary=compact) for name, array in arrays.items()}
        request = ScoreRequest(
            model=model,
            version=version,
            inputs=tensors,
            deadline=deadline,
            priority=priority,
        )
        return cls(
            request_id=request_id or new_request_id(),
            request=request,
            body_format=body_format,
            arrays=arrays if body_format == "binary" else None,
        )

    def body(self) -> bytes:
        """The message body, in `body_format`."""
        return self._binary.body if self.body_format == "binary" else self.json_body()

    def json_body(self) -> bytes:
        """The request as a JSON body (schema score-request.v1.json)."""
        return self.request.model_dump_json(exclude_none=True).encode()

    @property
    def content_type(self) -> str:
        return BINARY_REQUEST_CONTENT_TYPE if self.body_format == "binary" else REQUEST_CONTENT_TYPE

    @property
    def header_length(self) -> int | None:
        """The binary body's header length (its message's application property); None for JSON."""
        return self._binary.header_length if self.body_format == "binary" else None

    @cached_property
    def _binary(self) -> BinaryBody:
        arrays = self.arrays
        if arrays is None:
            arrays = {name: tensor.to_numpy() for name, tensor in self.request.inputs.items()}
        return encode_binary_request(self.request, arrays)


def split_rows(
    model: str,
    input_name: str,
    array: np.ndarray,
    *,
    rows_per_request: int = 1,
    version: str | None = None,
    binary: bool = False,
    body_format: BodyFormat = "binary",
) -> Iterator[OutgoingRequest]:
    """One request per `rows_per_request` rows of `array` (the last may be shorter)."""
    if rows_per_request < 1:
        raise ValueError("rows_per_request must be >= 1")
    for start in range(0, len(array), rows_per_request):
        chunk = array[start : start + rows_per_request]
        yield OutgoingRequest.build(
            model, {input_name: chunk}, version=version, binary=binary, body_format=body_format
        )


def request_message(
    outgoing: OutgoingRequest,
    *,
    reply_to: str,
    reply_to_session_id: str,
    traceparent: str | None = None,
    reference: bytes | None = None,
    accept: str | None = None,
) -> ServiceBusMessage:
    """The message for a request, addressed so the worker replies to our session; with a
    claim-check `reference`, that reference instead of the body (qscore.claimcheck; a binary
    body's header length still rides on the message). `accept`: the reply form asked for."""
    body, content_type, properties = _request_fields(outgoing, traceparent, reference, accept)
    return ServiceBusMessage(
        body,
        message_id=outgoing.request_id,
        reply_to=reply_to,
        reply_to_session_id=reply_to_session_id,
        content_type=content_type,
        application_properties=properties,
    )


def encoded_request(
    outgoing: OutgoingRequest,
    *,
    reply_to: str,
    reply_to_session_id: str,
    traceparent: str | None = None,
    reference: bytes | None = None,
    accept: str | None = None,
) -> bytes | None:
    """The AMQP bytes the SDK would send for `request_message` with the same arguments, encoded
    once without building a ServiceBusMessage (qscore.transport.amqp_encoding.encoder); None
    when the SDK hooks for it are missing (counted there)."""
    from qscore.transport.amqp_encoding import encoder

    body, content_type, properties = _request_fields(outgoing, traceparent, reference, accept)
    return encoder()(
        body,
        message_id=outgoing.request_id,
        correlation_id=None,
        session_id=None,
        content_type=content_type,
        application_properties=properties,
        time_to_live_ms=None,
        now_ms=0,
        reply_to=reply_to,
        reply_to_session_id=reply_to_session_id,
    )


def _request_fields(
    outgoing: OutgoingRequest, traceparent: str | None, reference: bytes | None, accept: str | None
) -> tuple[bytes, str, dict[str | bytes, Any] | None]:
    """A request message's body, content type and application properties."""
    properties: dict[str | bytes, Any] = {}
    if traceparent:
        properties["traceparent"] = traceparent
    if outgoing.header_length is not None:
        properties[HEADER_LENGTH_PROPERTY] = outgoing.header_length
    if accept:
        properties[ACCEPT_PROPERTY] = accept
    if reference is not None:
        return reference, CLAIM_CHECK_CONTENT_TYPE, properties or None
    return outgoing.body(), outgoing.content_type, properties or None


def batch_message(
    items: list[bytes],
    *,
    reply_to: str,
    reply_to_session_id: str,
    traceparent: str | None = None,
    accept: str | None = None,
) -> ServiceBusMessage:
    """A request-batch message of items already encoded (qscore.producer.coalesce.batch_item)."""
    from qscore.producer.coalesce import batch_body

    properties: dict[str | bytes, Any] = {}
    if traceparent:
        properties["traceparent"] = traceparent
    if accept:
        properties[ACCEPT_PROPERTY] = accept
    return ServiceBusMessage(
        batch_body(items),
        message_id=f"batch-{uuid.uuid4().hex}",
        reply_to=reply_to,
        reply_to_session_id=reply_to_session_id,
        content_type=REQUEST_BATCH_CONTENT_TYPE,
        application_properties=properties or None,
    )
