"""The Functions host's HTTP front, in process: an aiohttp server on loopback that serves each
httpTrigger function of an indexed app under /api/<route>, as the host does (route template,
methods, route parameters), with the `durableClient` binding of a LocalDurableApi.

Auth level is not enforced here: the app's HTTP API is anonymous to the host and checks Entra
tokens itself (functions/auth.py), which is what this front lets a test exercise over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func
from aiohttp import web

from qscore_local.functions_host.app_index import indexed_functions
from qscore_local.functions_host.durable_api import LocalDurableApi

ROUTE_PREFIX = "/api/"


def http_routes(
    app: func.FunctionApp,
) -> list[tuple[str, str, Callable[..., Awaitable[Any]], dict[str, Any]]]:
    """(method, aiohttp path, user function, bindings by name) for every httpTrigger."""
    routes = []
    for function in indexed_functions(app):
        bindings = json.loads(function.get_function_json())["bindings"]
        trigger = next((b for b in bindings if b["type"] == "httpTrigger"), None)
        if trigger is None:
            continue
        for method in trigger.get("methods") or ["GET", "POST"]:
            path = ROUTE_PREFIX + trigger["route"]
            routes.append(
                (method.upper(), path, function.get_user_function(), {b["name"]: b for b in bindings})
            )
    return routes


class HttpFront:
    def __init__(self, app: func.FunctionApp, durable: LocalDurableApi, *, host: str = "127.0.0.1") -> None:
        self.app = app
        self.durable = durable
        self.host = host
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        server = web.Application(client_max_size=8 * 1024 * 1024)
        for method, path, user_function, bindings in http_routes(self.app):
            server.router.add_route(method, path, self._handler(user_function, bindings))
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _handler(
        self, user_function: Callable[..., Awaitable[Any]], bindings: dict[str, Any]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        trigger_name = next(name for name, b in bindings.items() if b["type"] == "httpTrigger")
        client_name = next((name for name, b in bindings.items() if b["type"] == "durableClient"), None)

        async def handle(request: web.Request) -> web.Response:
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=dict(request.match_info),
                body=await request.read(),
            )
            kwargs: dict[str, Any] = {trigger_name: req}
            if client_name is not None:
                kwargs[client_name] = self.durable.binding_json()
            try:
                response: func.HttpResponse = await user_function(**kwargs)
            except Exception as exc:  # the host answers an unhandled exception with a bare 500
                return web.Response(status=500, text=f"unhandled: {exc!r}")
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return web.Response(status=response.status_code, body=response.get_body(), headers=headers)

        return handle
