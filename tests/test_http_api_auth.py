"""The HTTP API with Entra ID tokens, against a stand-in tenant (tests/fixtures/entra.py: a
key-set endpoint on loopback, tokens signed by a test RSA key): a good token is served; no
token, an expired one, one for another audience or tenant, a forged signature, an unknown key
id, a token without the submit role, and another caller's request are refused, each as
problem+json. Then the running API (the in-process host's HTTP front) is fuzzed from its
OpenAPI document with schemathesis: no 5xx, every refusal a problem+json body."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import names, openapi
from functions.problems import PROBLEM_CONTENT_TYPE
from functions.runtime import install_runtime
from functions.settings import FunctionsSettings
from qscore_local.functions_host.app_index import user_function
from qscore_local.functions_host.durable_api import LocalDurableApi
from qscore_local.functions_host.http_front import HttpFront
from tests.fixtures.entra import CALLER, OTHER_CALLER, StandInTenant, new_key

URL = "http://localhost:7071/api/score"
VALID = {"model": "digits", "inputs": {"pixels": {"datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}}}


@pytest.fixture
def http_env(
    functions_settings: FunctionsSettings, entra_env: StandInTenant, monkeypatch: pytest.MonkeyPatch
) -> StandInTenant:
    monkeypatch.setenv("QSCORE_FUNCTIONS_PAYLOAD_DIR", str(functions_settings.payload_dir))
    install_runtime(None)
    return entra_env


def _problem(response: func.HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_body()
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    document: dict[str, Any] = json.loads(response.get_body())
    assert document["status"] == status and document["code"] == code, document
    return document


async def _submit(app: Any, api: LocalDurableApi, headers: dict[str, str]) -> func.HttpResponse:
    req = func.HttpRequest(method="POST", url=URL, body=json.dumps(VALID).encode(), headers=headers)
    response: func.HttpResponse = await user_function(app, names.HTTP_SUBMIT)(
        req=req, client=api.binding_json()
    )
    return response


async def _status(
    app: Any, api: LocalDurableApi, request_id: str, headers: dict[str, str]
) -> func.HttpResponse:
    req = func.HttpRequest(
        method="GET", url=f"{URL}/{request_id}", body=b"", headers=headers, route_params={"id": request_id}
    )
    response: func.HttpResponse = await user_function(app, names.HTTP_STATUS)(
        req=req, client=api.binding_json()
    )
    return response


async def test_a_good_token_is_served_and_the_submitter_is_stored(
    functions_app: Any, durable_api: LocalDurableApi, http_env: StandInTenant
) -> None:
    ok = await _submit(functions_app, durable_api, {"x-request-id": "mine", **http_env.bearer()})
    assert ok.status_code == 202
    started = json.loads(durable_api.calls[-1].body)
    assert started["submitter"] == CALLER
    assert durable_api.calls[-1].path.endswith(names.http_instance_id(CALLER, "mine"))
    status = await _status(functions_app, durable_api, "mine", http_env.bearer(roles=()))  # reading: no role
    assert status.status_code == 202


async def test_bad_tokens_are_refused_as_problems(
    functions_app: Any, durable_api: LocalDurableApi, http_env: StandInTenant
) -> None:
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthenticated"),
        (http_env.bearer(expires_in_s=-3600), 401, "token_expired"),
        (http_env.bearer(aud="api://someone-else"), 401, "invalid_token"),
        (http_env.bearer(iss="https://login.microsoftonline.com/other-tenant/v2.0"), 401, "invalid_token"),
        (http_env.bearer(key=new_key()), 401, "invalid_token"),  # right kid, wrong signature
        (http_env.bearer(kid="unknown-key"), 401, "invalid_token"),
        ({"Authorization": "Bearer not.a.jwt"}, 401, "invalid_token"),
        (http_env.bearer(roles=("Score.Read",)), 403, "forbidden"),
    ]
    for headers, status, code in cases:
        response = await _submit(functions_app, durable_api, headers)
        _problem(response, status, code)
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not [c for c in durable_api.calls if c.method == "POST"]  # nothing was started


async def test_a_caller_reads_only_its_own_requests(
    functions_app: Any, durable_api: LocalDurableApi, http_env: StandInTenant
) -> None:
    assert (
        await _submit(functions_app, durable_api, {"x-request-id": "r-7", **http_env.bearer()})
    ).status_code == 202
    mine = await _status(functions_app, durable_api, "r-7", http_env.bearer())
    assert mine.status_code == 202
    theirs = await _status(functions_app, durable_api, "r-7", http_env.bearer(oid=OTHER_CALLER))
    _problem(theirs, 404, "not_found")
    # The other caller's own "r-7" is a request of its own, not a duplicate of the first.
    other = await _submit(
        functions_app, durable_api, {"x-request-id": "r-7", **http_env.bearer(oid=OTHER_CALLER)}
    )
    assert other.status_code == 202
    assert len([c for c in durable_api.calls if c.method == "POST"]) == 2


async def test_unconfigured_auth_refuses_everything(
    functions_app: Any, durable_api: LocalDurableApi, entra: StandInTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("ISSUER", "AUDIENCE", "JWKS_URL"):
        monkeypatch.delenv(f"QSCORE_FUNCTIONS_AUTH_{variable}", raising=False)
    _problem(await _submit(functions_app, durable_api, entra.bearer()), 503, "auth_not_configured")


@pytest.fixture
def running_api(functions_app: Any, http_env: StandInTenant) -> Iterator[str]:
    """The API on the in-process host's HTTP front, on its own event loop in a thread (the
    fuzzer's HTTP calls are blocking)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        durable = LocalDurableApi()
        await durable.start()
        front = HttpFront(functions_app, durable)
        holder.update(durable=durable, front=front, url=await front.start())

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield str(holder["url"])
    finally:

        async def stop() -> None:
            await holder["front"].stop()
            await holder["durable"].stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_openapi_document_is_current() -> None:
    assert openapi.PATH.read_text() == openapi.render(), "run: python -m functions.openapi --write"


FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


def test_fuzz_the_running_api_from_its_openapi_document(running_api: str, http_env: StandInTenant) -> None:
    schema = schemathesis.openapi.from_dict(json.loads(openapi.PATH.read_text()))
    tokens = [http_env.bearer(), http_env.bearer(roles=()), http_env.bearer(expires_in_s=-3600), {}]
    session = requests.Session()
    seen: set[int] = set()
    operations = (schema["/api/score"]["POST"], schema["/api/score/{id}"]["GET"])
    # Positive: bodies and parameters the document allows; negative: ones it does not.
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @FUZZ
        @given(case=operation.as_strategy(mode), headers=st.sampled_from(tokens))
        def check(case: schemathesis.Case, headers: dict[str, str]) -> None:
            response = case.call(base_url=running_api, session=session, headers=headers)
            seen.add(response.status_code)
            where = (case.method, case.path, case.path_parameters, response.status_code, response.text)
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert response.headers.get("content-type") == [PROBLEM_CONTENT_TYPE], where
                body = response.json()
                assert body["status"] == response.status_code and body["code"], where

        check()
    assert {202, 400, 401, 403, 404} <= seen, seen
