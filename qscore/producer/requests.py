"""Build scoring requests from numpy arrays and turn them into Service Bus messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from azure.servicebus import ServiceBusMessage

from qscore.claimcheck.reference import CLAIM_CHECK_CONTENT_TYPE
from qscore.contracts import REQUEST_BATCH_CONTENT_TYPE, REQUEST_CONTENT_TYPE, ScoreRequest, Tensor


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class OutgoingRequest:
    """A request and the id it travels under (the message id; replies carry it as correlation id)."""

    request_id: str
    request: ScoreRequest

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
    ) -> OutgoingRequest:
        """Encode `inputs` (each with its leading batch dimension); `binary` uses compact base64."""
        if not inputs:
            raise ValueError("a request needs at least one input tensor")
        tensors = {name: Tensor.from_numpy(np.asarray(arr), binary=binary) for name, arr in inputs.items()}
        request = ScoreRequest(
            model=model,
            version=version,
            inputs=tensors,
            deadline=deadline,
            priority=priority,
        )
        return cls(request_id=request_id or new_request_id(), request=request)

    def body(self) -> bytes:
        return self.request.model_dump_json(exclude_none=True).encode()


def split_rows(
    model: str,
    input_name: str,
    array: np.ndarray,
    *,
    rows_per_request: int = 1,
    version: str | None = None,
    binary: bool = False,
) -> Iterator[OutgoingRequest]:
    """One request per `rows_per_request` rows of `array` (the last may be shorter)."""
    if rows_per_request < 1:
        raise ValueError("rows_per_request must be >= 1")
    for start in range(0, len(array), rows_per_request):
        chunk = array[start : start + rows_per_request]
        yield OutgoingRequest.build(model, {input_name: chunk}, version=version, binary=binary)


def request_message(
    outgoing: OutgoingRequest,
    *,
    reply_to: str,
    reply_to_session_id: str,
    traceparent: str | None = None,
    reference: bytes | None = None,
) -> ServiceBusMessage:
    """The message for a request, addressed so the worker replies to our session; with a
    claim-check `reference`, that reference instead of the body (qscore.claimcheck)."""
    properties: dict[str | bytes, Any] = {}
    if traceparent:
        properties["traceparent"] = traceparent
    return ServiceBusMessage(
        outgoing.body() if reference is None else reference,
        message_id=outgoing.request_id,
        reply_to=reply_to,
        reply_to_session_id=reply_to_session_id,
        content_type=REQUEST_CONTENT_TYPE if reference is None else CLAIM_CHECK_CONTENT_TYPE,
        application_properties=properties or None,
    )


def batch_message(
    items: list[bytes], *, reply_to: str, reply_to_session_id: str, traceparent: str | None = None
) -> ServiceBusMessage:
    """A request-batch message of items already encoded (qscore.producer.coalesce.batch_item)."""
    from qscore.producer.coalesce import batch_body

    return ServiceBusMessage(
        batch_body(items),
        message_id=f"batch-{uuid.uuid4().hex}",
        reply_to=reply_to,
        reply_to_session_id=reply_to_session_id,
        content_type=REQUEST_BATCH_CONTENT_TYPE,
        application_properties={"traceparent": traceparent} if traceparent else None,
    )
