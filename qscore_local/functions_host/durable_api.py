"""A stand-in for the Durable Functions HTTP API on loopback (the part `DurableOrchestrationClient`
calls: start an instance, read its status), backed by the local engine, recording every call.

Without an engine it only records starts (instances stay Pending) - enough to test a trigger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from qscore_local.functions_host.engine import InstanceRecord, LocalDurableEngine

BASE_PATH = "/runtime/webhooks/durabletask/"
TASK_HUB = "qscorelocal"


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    body: Any


async def close_client_sessions() -> None:
    """Close the aiohttp session the Durable SDK keeps per process (the host never does)."""
    from azure.durable_functions.models.utils import http_utils

    await http_utils._close_session()


class LocalDurableApi:
    def __init__(
        self, engine: LocalDurableEngine | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.calls: list[RecordedCall] = []
        self.instances: dict[str, InstanceRecord] = engine.instances if engine else {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{BASE_PATH}"

    def binding_json(self) -> str:
        """The `durableClient` binding value the host would pass to a client function."""
        orchestrators = f"{self.base_url}orchestrators/{{functionName}}[/{{instanceId}}]"
        instance = f"{self.base_url}instances/INSTANCEID?taskHub={TASK_HUB}&connection=Storage&code=local"
        return json.dumps(
            {
                "taskHubName": TASK_HUB,
                "creationUrls": {
                    "createNewInstancePostUri": orchestrators,
                    "createAndWaitOnNewInstancePostUri": orchestrators + "?timeout={timeoutInSeconds}",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": instance,
                    "sendEventPostUri": instance.replace("?", "/raiseEvent/{eventName}?"),
                    "terminatePostUri": instance.replace("?", "/terminate?reason={text}&"),
                    "purgeHistoryDeleteUri": instance,
                },
                "baseUrl": self.base_url.rstrip("/"),
                "requiredQueryStringParameters": f"taskHub={TASK_HUB}&connection=Storage&code=local",
                "rpcBaseUrl": self.base_url,
                "httpBaseUrl": "",
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(BASE_PATH + "orchestrators/{name}/{instance_id}", self._start_instance)
        app.router.add_get(BASE_PATH + "instances/{instance_id}", self._get_status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await close_client_sessions()

    async def __aenter__(self) -> LocalDurableApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> Any:
        text = await request.text()
        body = json.loads(text) if text else None
        self.calls.append(RecordedCall(request.method, request.path, dict(request.query), body))
        return body

    async def _start_instance(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        name, instance_id = request.match_info["name"], request.match_info["instance_id"]
        # The client posts the df_dumps() text of the input as a JSON string value.
        input_json = body if isinstance(body, str) or body is None else json.dumps(body)
        if self.engine is None:
            self.instances[instance_id] = InstanceRecord(
                instance_id=instance_id, name=name, input_json=input_json
            )
        elif name not in self.engine.orchestrators:
            return web.json_response(
                {"ExceptionMessage": f"The function '{name}' doesn't exist."}, status=400
            )
        else:
            self.engine.start(name, instance_id, input_json)
        return web.json_response({"id": instance_id}, status=202)

    async def _get_status(self, request: web.Request) -> web.Response:
        await self._record(request)
        record = self.instances.get(request.match_info["instance_id"])
        if record is None:
            return web.Response(status=404)
        code = {"Completed": 200, "Failed": 500, "Terminated": 400}.get(record.status, 202)
        return web.json_response(record.status_json(), status=code)
