"""Turn a raw request body into a validated ScoringItem with its resolved model version.

Shared by the worker and the Functions activities so that both judge a request the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from qscore.contracts import (
    PRODUCTION_LABEL,
    BinaryRequest,
    ContractViolation,
    ErrorCode,
    ModelSpec,
    ScoreRequest,
    binary_request_arrays,
    check_deadline,
    decode_binary_request,
    decode_request,
    header_length_of,
    is_binary_request,
    request_arrays,
)
from qscore.contracts.validation import DEFAULT_MAX_MESSAGE_BYTES
from qscore.registry import ModelRegistry, RegistryError
from qscore.registry.store import Route
from qscore.scoring.core import InteractionRoute, ScoringItem


class SpecSource(Protocol):
    """Where model specs come from (qscore.inference.TritonClient provides it; it caches)."""

    async def model_spec(self, model: str, version: str = "") -> ModelSpec: ...


class UnknownModel(Exception):
    """Raised by a SpecSource for a model the server does not serve (permanent)."""


@dataclass(frozen=True)
class PreparedRequest:
    item: ScoringItem
    spec: ModelSpec
    version: str
    shadow_version: str | None = None
    # How the version was chosen, as the interaction log records it (canary/pinned/production).
    route: InteractionRoute = "production"


def interaction_route(request: ScoreRequest, route: Route) -> InteractionRoute:
    """canary: a flight picked the version; pinned: the request named a version or a label other
    than production; production: the registry's production version."""
    if route.flighted:
        return "canary"
    if request.version and request.version != PRODUCTION_LABEL:
        return "pinned"
    return "production"


class RequestPreparer:
    """decode -> deadline -> model spec -> registry route -> tensors checked against the spec."""

    def __init__(
        self,
        *,
        specs: SpecSource,
        registry: ModelRegistry,
        unknown_model_errors: tuple[type[BaseException], ...] = (UnknownModel,),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._specs = specs
        self._registry = registry
        self._unknown_model_errors = unknown_model_errors
        self._max_message_bytes = max_message_bytes

    async def prepare(
        self,
        *,
        request_id: str,
        body: bytes,
        received_at: float,
        enqueued_at: float | None = None,
        max_message_bytes: int | None = None,
        content_type: str | None = None,
        header_length: object = None,
    ) -> PreparedRequest:
        """Raises ContractViolation for a request that can never be scored as sent.

        `max_message_bytes` overrides the body limit (a claim-checked body has its own).
        `content_type` picks the form (JSON, or binary with the message's `header_length`
        property); the envelope check has already refused any other."""
        limit = max_message_bytes or self._max_message_bytes
        if is_binary_request(content_type):
            decoded = decode_binary_request(body, header_length_of(header_length), max_message_bytes=limit)
            return await self.prepare_request(
                request_id=request_id,
                request=decoded.request,
                received_at=received_at,
                enqueued_at=enqueued_at,
                binary=decoded,
            )
        request = decode_request(body, max_message_bytes=limit)
        return await self.prepare_request(
            request_id=request_id, request=request, received_at=received_at, enqueued_at=enqueued_at
        )

    @property
    def max_message_bytes(self) -> int:
        """The body limit of a request (and of a request-batch message's whole body)."""
        return self._max_message_bytes

    async def prepare_request(
        self,
        *,
        request_id: str,
        request: ScoreRequest,
        received_at: float,
        enqueued_at: float | None = None,
        binary: BinaryRequest | None = None,
    ) -> PreparedRequest:
        """The same for a decoded request (an item of a request batch); `binary`: its inputs
        are in a binary body."""
        check_deadline(request)
        try:
            spec = await self._specs.model_spec(request.model)
        except self._unknown_model_errors:
            raise ContractViolation(
                ErrorCode.UNKNOWN_MODEL, f"no model named {request.model!r} is served"
            ) from None
        try:
            route = self._registry.resolve(
                request.model, request.version, available=spec.versions, routing_key=request_id
            )
        except RegistryError as exc:
            raise ContractViolation(ErrorCode.UNKNOWN_VERSION, str(exc)) from None
        arrays: dict[str, np.ndarray] = (
            request_arrays(request, spec) if binary is None else binary_request_arrays(binary, spec)
        )
        item = ScoringItem(
            request_id=request_id,
            request=request,
            arrays=arrays,
            received_at=received_at,
            enqueued_at=enqueued_at,
        )
        return PreparedRequest(
            item=item,
            spec=spec,
            version=route.version,
            shadow_version=route.shadow_version,
            route=interaction_route(request, route),
        )


def model_named_in(body: bytes, *, content_type: str | None = None, header_length: object = None) -> str:
    """The model a request body names, best effort ("" when it names none): for the error reply
    of a request that failed a check, in either form (a binary body's header names it)."""
    try:
        length = header_length_of(header_length) if is_binary_request(content_type) else None
        document = json.loads(body if length is None else body[:length])
    except (ContractViolation, ValueError, UnicodeDecodeError):
        return ""
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else ""
