"""Index the app as the host does, and call the trigger and HTTP functions with the real
azure-functions types and a real DurableOrchestrationClient against the recording stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from functions import names
from functions.runtime import install_runtime
from functions.settings import FunctionsSettings
from qscore.telemetry import InMemoryTelemetry
from qscore_local.functions_host.app_index import indexed_functions, user_function
from qscore_local.functions_host.durable_api import LocalDurableApi
from qscore_local.functions_host.engine import InstanceRecord
from qscore_local.functions_host.messages import to_function_messages
from tests.fixtures.entra import CALLER, StandInTenant

EXPECTED = {
    names.TRIGGER: [
        {"direction": "IN", "type": "durableClient", "name": "client"},
        {
            "direction": "IN",
            "type": "serviceBusTrigger",
            "name": "messages",
            "connection": "ServiceBusConnection",
            "queueName": "%QSCORE_REQUEST_QUEUE%",
            "cardinality": "MANY",
        },
    ],
    names.ORCHESTRATOR: [
        {
            "direction": "IN",
            "type": "orchestrationTrigger",
            "name": "context",
            "orchestration": names.ORCHESTRATOR,
        }
    ],
    **{
        activity: [{"direction": "IN", "type": "activityTrigger", "name": "payload", "activity": activity}]
        for activity in (
            names.VALIDATE,
            names.INFER,
            names.SHADOW_INFER,
            names.SEND_REPLIES,
            names.DEAD_LETTER,
            names.RELEASE,
        )
    },
}


def test_index_matches_function_json(functions_app: Any) -> None:
    indexed = {
        f.get_function_name(): json.loads(f.get_function_json()) for f in indexed_functions(functions_app)
    }
    for name, bindings in EXPECTED.items():
        assert indexed[name]["bindings"] == bindings, name
    for name, route, method in (
        (names.HTTP_SUBMIT, "score", "POST"),
        (names.HTTP_STATUS, "score/{id}", "GET"),
    ):
        http = next(b for b in indexed[name]["bindings"] if b["type"] == "httpTrigger")
        # No function keys: the app validates Entra ID tokens itself (tests/test_http_api_auth.py).
        assert (http["route"], http["methods"], http["authLevel"]) == (route, [method], "ANONYMOUS")
    assert set(indexed) == {*EXPECTED, names.HTTP_SUBMIT, names.HTTP_STATUS}


def received(message_id: str, body: bytes, **extra: Any) -> SimpleNamespace:
    fields = {
        "message_id": message_id,
        "body": body,
        "content_type": "application/vnd.qscore.request.v1+json",
        "correlation_id": None,
        "reply_to": "scoring-replies",
        "reply_to_session_id": "producer-1",
        "session_id": None,
        "delivery_count": 1,
        "sequence_number": 7,
        "enqueued_time_utc": datetime(2025, 1, 1, tzinfo=UTC),
        "lock_token": "lock-" + message_id,
        "subject": None,
        "application_properties": {b"traceparent": b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"},
    }
    return SimpleNamespace(**{**fields, **extra})


@pytest.fixture
def local_stores(functions_settings: FunctionsSettings, monkeypatch: pytest.MonkeyPatch) -> FunctionsSettings:
    monkeypatch.setenv("QSCORE_FUNCTIONS_PAYLOAD_DIR", str(functions_settings.payload_dir))
    monkeypatch.setenv("QSCORE_FUNCTIONS_INLINE_LIMIT_BYTES", "2048")
    install_runtime(None)
    return functions_settings


async def test_trigger_starts_one_orchestration_per_batch(
    functions_app: Any, durable_api: LocalDurableApi, local_stores: FunctionsSettings
) -> None:
    messages = to_function_messages([received("m2", b'{"model": "digits"}'), received("m1", b"\xff\xfe")])
    assert isinstance(messages[0], func.ServiceBusMessage)
    assert messages[0].reply_to_session_id == "producer-1" and messages[1].get_body() == b"\xff\xfe"
    trigger = user_function(functions_app, names.TRIGGER)
    await trigger(messages=messages, client=durable_api.binding_json())
    instance_id = names.messages_instance_id(["m1", "m2"])
    assert [(c.method, c.path.rsplit("/", 2)[-2:]) for c in durable_api.calls] == [
        ("GET", ["instances", instance_id]),
        ("POST", [names.ORCHESTRATOR, instance_id]),
    ]
    started = json.loads(durable_api.calls[1].body)
    batch = json.loads(started["batch"]["inline"])["messages"]
    assert [m["message_id"] for m in batch] == ["m2", "m1"]
    assert batch[1]["encoding"] == "base64" and batch[0]["traceparent"].startswith("00-111")
    assert batch[0]["enqueued_at"] == datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    # Redelivered in another order: same instance, already there, not started again.
    durable_api.instances[instance_id].status = "Running"
    await trigger(messages=list(reversed(messages)), client=durable_api.binding_json())
    assert [c.method for c in durable_api.calls] == ["GET", "POST", "GET"]


async def test_large_batch_goes_by_reference(
    functions_app: Any, durable_api: LocalDurableApi, local_stores: FunctionsSettings
) -> None:
    body = json.dumps({"model": "digits", "pad": "x" * 4000}).encode()
    trigger = user_function(functions_app, names.TRIGGER)
    await trigger(messages=to_function_messages([received("big", body)]), client=durable_api.binding_json())
    started = json.loads(durable_api.calls[-1].body)
    assert started["batch"]["inline"] is None and started["batch"]["ref"].startswith("sha256-")
    stored = (local_stores.payload_dir / started["batch"]["ref"]).read_text()
    assert json.loads(stored)["messages"][0]["message_id"] == "big"


async def test_failed_instance_is_started_again(
    functions_app: Any, durable_api: LocalDurableApi, local_stores: FunctionsSettings
) -> None:
    instance_id = names.messages_instance_id(["again"])
    durable_api.instances[instance_id] = InstanceRecord(
        instance_id, names.ORCHESTRATOR, None, status="Failed"
    )
    trigger = user_function(functions_app, names.TRIGGER)
    await trigger(
        messages=to_function_messages([received("again", b"{}")]), client=durable_api.binding_json()
    )
    assert [c.method for c in durable_api.calls] == ["GET", "POST"]


def http_request(method: str, url: str, body: bytes = b"", **kwargs: Any) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=url, body=body, **kwargs)


VALID = {"model": "digits", "inputs": {"pixels": {"datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}}}


async def test_http_submit_validates_and_returns_202(
    functions_app: Any,
    durable_api: LocalDurableApi,
    local_stores: FunctionsSettings,
    entra_env: StandInTenant,
) -> None:
    submit = user_function(functions_app, names.HTTP_SUBMIT)
    url = "http://localhost:7071/api/score"
    auth = entra_env.bearer()
    bad = await submit(
        req=http_request("POST", url, b'{"model": 3}', headers=auth), client=durable_api.binding_json()
    )
    assert bad.status_code == 400 and bad.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(bad.get_body())
    assert problem["status"] == 400 and problem["code"] == "schema_violation" and "model" in problem["detail"]
    assert durable_api.calls == []
    ok = await submit(
        req=http_request("POST", url, json.dumps(VALID).encode(), headers={"x-request-id": "r-1", **auth}),
        client=durable_api.binding_json(),
    )
    assert ok.status_code == 202 and ok.headers["Location"] == "http://localhost:7071/api/score/r-1"
    assert durable_api.calls[-1].path.endswith(names.http_instance_id(CALLER, "r-1"))
    status = user_function(functions_app, names.HTTP_STATUS)
    pending = await status(
        req=http_request("GET", ok.headers["Location"], route_params={"id": "r-1"}, headers=auth),
        client=durable_api.binding_json(),
    )
    assert pending.status_code == 202 and json.loads(pending.get_body())["status"] == "Pending"
    unknown = await status(
        req=http_request("GET", url + "/nope", route_params={"id": "nope"}, headers=auth),
        client=durable_api.binding_json(),
    )
    assert unknown.status_code == 404 and json.loads(unknown.get_body())["code"] == "not_found"


async def test_http_submit_carries_the_callers_trace(
    functions_app: Any,
    durable_api: LocalDurableApi,
    local_stores: FunctionsSettings,
    telemetry_capture: InMemoryTelemetry,
    entra_env: StandInTenant,
) -> None:
    caller_trace, caller_span = "a" * 32, "b" * 16
    submit = user_function(functions_app, names.HTTP_SUBMIT)
    headers = {
        "x-request-id": "traced-1",
        "traceparent": f"00-{caller_trace}-{caller_span}-01",
        **entra_env.bearer(),
    }
    ok = await submit(
        req=http_request(
            "POST", "http://localhost:7071/api/score", json.dumps(VALID).encode(), headers=headers
        ),
        client=durable_api.binding_json(),
    )
    assert ok.status_code == 202
    (span,) = [
        s for s in telemetry_capture.spans.get_finished_spans() if s.name == "qscore.functions.http_submit"
    ]
    assert span.parent is not None and format(span.parent.span_id, "016x") == caller_span
    started = json.loads(durable_api.calls[-1].body)
    (message,) = json.loads(started["batch"]["inline"])["messages"]
    # The activities' spans will be children of the submit span, in the caller's trace.
    assert message["traceparent"] == f"00-{caller_trace}-{format(span.context.span_id, '016x')}-01"


async def test_trigger_reads_diagnostic_id_as_traceparent(
    functions_app: Any, durable_api: LocalDurableApi, local_stores: FunctionsSettings
) -> None:
    legacy = {b"Diagnostic-Id": b"00-" + b"3" * 32 + b"-" + b"4" * 16 + b"-01"}
    messages = to_function_messages([received("legacy", b"{}", application_properties=legacy)])
    await user_function(functions_app, names.TRIGGER)(messages=messages, client=durable_api.binding_json())
    started = json.loads(durable_api.calls[-1].body)
    (message,) = json.loads(started["batch"]["inline"])["messages"]
    assert message["traceparent"].startswith("00-333")
