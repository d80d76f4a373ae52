"""HTTP API for services that cannot use the queue.

POST /api/score    body: a ScoreRequest. 202 + Location/status URL; the request is scored by the
                   same orchestration as a queue batch (a batch of one, reply in its output).
GET  /api/score/{id}  200 with the ScoreReply when done, 202 while running, 404 if unknown.

Auth: Entra ID access tokens, validated and authorized by the app (functions/auth.py); the
routes are anonymous to the Functions host (no function keys). Submitting needs the submit app
role; a caller reads only its own requests: each is keyed by its submitter
(names.http_instance_id), so another caller's id is simply unknown (404). The OpenAPI document
is functions/openapi.json. Every refusal is problem+json (functions/problems.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import azure.durable_functions as df
import azure.functions as func
from opentelemetry.trace import SpanKind

from functions import names
from functions.auth import AuthSettings, Refused, authenticate, require_role
from functions.payloads import InboundMessage
from functions.problems import problem
from functions.runtime import current_settings, payload_store
from functions.trigger import orchestration_input, start_once
from qscore.contracts import ContractViolation, check_deadline, decode_request
from qscore.contracts.validation import DEFAULT_MAX_MESSAGE_BYTES
from qscore.telemetry import extract_trace_context, inject_trace_context, tracer

bp = df.Blueprint(http_auth_level=func.AuthLevel.ANONYMOUS)

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128


def _request_id(req: func.HttpRequest) -> str | None:
    """A client-chosen id makes a retried POST idempotent; otherwise a fresh one."""
    given = req.headers.get(REQUEST_ID_HEADER)
    if given is None:
        return str(uuid.uuid4())
    given = given.strip()
    if not given or len(given) > MAX_REQUEST_ID or not given.isprintable():
        return None
    return given


@contextmanager
def _submit_span(req: func.HttpRequest) -> Iterator[dict[str, str | None]]:
    """A SERVER span around the submit, child of the caller's W3C `traceparent` header when it
    sent one. Yields the span's trace context, which travels with the request (as a queue
    message's traceparent does), so the scoring and reply spans join the caller's trace."""
    parent = extract_trace_context(dict(req.headers))
    with tracer().start_as_current_span("qscore.functions.http_submit", context=parent, kind=SpanKind.SERVER):
        carrier: dict[str, str] = {}
        inject_trace_context(carrier)
        yield {"traceparent": carrier.get("traceparent"), "tracestate": carrier.get("tracestate")}


def _status_url(req: func.HttpRequest, request_id: str) -> str:
    base = req.url.split("/api/", 1)[0]
    return f"{base}/api/score/{request_id}"


@bp.function_name(names.HTTP_SUBMIT)
@bp.route(route="score", methods=[func.HttpMethod.POST])
@bp.durable_client_input(client_name="client")
async def http_submit_score(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Authenticate and authorize, validate the body as the queue path does, then score it as
    a batch of one."""
    settings = AuthSettings.from_env()
    try:
        caller = await authenticate(req, settings)
        require_role(caller, settings.submit_role)
    except Refused as refused:
        return refused.response()
    request_id = _request_id(req)
    if request_id is None:
        return problem(
            400,
            "Bad request id",
            f"{REQUEST_ID_HEADER} must be 1-{MAX_REQUEST_ID} printable characters",
            code="bad_request_id",
        )
    body = req.get_body()
    try:
        check_deadline(decode_request(body, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES))
    except ContractViolation as violation:
        return problem(400, "Invalid scoring request", violation.description, code=violation.code.value)
    with _submit_span(req) as trace_context:
        message = InboundMessage.from_body(
            body, message_id=request_id, received_at=time.time(), origin="http", **trace_context
        )
        started = await orchestration_input([message], payload_store(), current_settings())
        started = started.model_copy(update={"submitter": caller.subject})
        await start_once(client, names.http_instance_id(caller.subject, request_id), started)
    status_url = _status_url(req, request_id)
    return func.HttpResponse(
        json.dumps({"id": request_id, "statusQueryGetUri": status_url}),
        status_code=202,
        headers={"Content-Type": "application/json", "Location": status_url, "Retry-After": "1"},
    )


@bp.function_name(names.HTTP_STATUS)
@bp.route(route="score/{id}", methods=[func.HttpMethod.GET])
@bp.durable_client_input(client_name="client")
async def http_score_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """The reply once scored; 202 while the orchestration runs; 404 for an id this caller did
    not submit."""
    try:
        caller = await authenticate(req)
    except Refused as refused:
        return refused.response()
    request_id = req.route_params.get("id", "")
    status = await client.get_status(names.http_instance_id(caller.subject, request_id))
    state = status.runtime_status
    if state is None:
        return problem(404, "Unknown request", f"no scoring request {request_id!r}", code="not_found")
    if state == df.OrchestrationRuntimeStatus.Completed:
        reply = (status.output or {}).get("http_replies", {}).get(request_id)
        if reply is not None:
            return func.HttpResponse(
                json.dumps(reply), status_code=200, headers={"Content-Type": "application/json"}
            )
        return problem(404, "Unknown request", f"{request_id!r} was not an HTTP request", code="not_found")
    if state in (df.OrchestrationRuntimeStatus.Failed, df.OrchestrationRuntimeStatus.Terminated):
        return problem(
            500, "Scoring failed", f"the scoring of {request_id!r} ended {state.value}", code="failed"
        )
    return func.HttpResponse(
        json.dumps({"id": request_id, "status": state.value}),
        status_code=202,
        headers={"Content-Type": "application/json", "Retry-After": "1"},
    )
