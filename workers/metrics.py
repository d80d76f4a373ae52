"""`GET /metrics` on the worker's health port: the scoring instruments in Prometheus text format.

The worker calls `qscore.telemetry.configure(..., prometheus=True)`, which adds a pull reader
for the same OpenTelemetry instruments that OTLP or Application Insights receive; this
handler renders it. Collection takes the SDK's locks and formats every series, so it runs
in a thread, never on the event loop. Without a Prometheus reader (tests that configure
nothing, a process configured without it) the answer is an empty, valid exposition.
"""

from __future__ import annotations

import asyncio
from typing import Any

EMPTY_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics_handler(request: Any) -> Any:
    from aiohttp import web

    from qscore.telemetry import prometheus_text

    rendered = await asyncio.to_thread(prometheus_text)
    body, content_type = rendered if rendered is not None else (b"", EMPTY_CONTENT_TYPE)
    response = web.Response(body=body)
    # aiohttp refuses a content_type with parameters; the header carries Prometheus' version.
    response.headers["Content-Type"] = content_type
    return response
