"""Application Insights export through azure-monitor-opentelemetry-exporter, against a loopback
stand-in for the ingestion service: the connection string's `IngestionEndpoint` names it, and
the envelopes that arrive on /v2.1/track are checked (spans, metrics, log records).

The exporting process is a subprocess: `configure` sets OpenTelemetry's global providers,
which a test process can set only once.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fixtures.ports import free_port

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000017"

_PROBE = textwrap.dedent(
    """
    import logging
    from qscore import telemetry
    from qscore.contracts import ReplyStatus, Timings
    telemetry.configure("qscore-worker")
    properties = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with telemetry.message_span("qscore.worker.process", properties, queue="requests", message_id="m1"):
        logging.getLogger("qscore.test").warning("scored m1")
    timings = Timings(queue_wait_ms=3.0, batch_wait_ms=2.0, inference_ms=5.0, total_ms=12.0)
    telemetry.scoring_metrics().record_reply("digits", "2", ReplyStatus.OK, timings)
    telemetry.scoring_metrics().record_dead_letter("bad_shape")
    telemetry.force_flush(20000)
    telemetry.reset()
    """
)


def _envelopes(body: bytes, encoding: str | None) -> list[dict[str, Any]]:
    if encoding == "gzip" or body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode()
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_spans_metrics_and_logs_reach_application_insights(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    paths: list[str] = []

    async def track(request: web.Request) -> web.Response:
        paths.append(request.path)
        items = _envelopes(await request.read(), request.headers.get("Content-Encoding"))
        received.extend(items)
        accepted = {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        return web.json_response(accepted)

    app = web.Application()
    app.router.add_post("/v2.1/track", track)
    app.router.add_post("/v2/track", track)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "APPLICATIONINSIGHTS"))
    }
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
        f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint=http://127.0.0.1:{port}"
    )
    env["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"  # no calls to Microsoft's endpoints
    env["TMPDIR"] = str(tmp_path)  # the exporter's offline retry storage: this test's own
    try:
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROBE, env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, stderr = await asyncio.wait_for(probe.communicate(), timeout=90)
        finally:
            if probe.returncode is None:  # timed out: leave no exporter running behind the test
                probe.kill()
                await probe.wait()
        assert probe.returncode == 0, stderr.decode()[-3000:]
    finally:
        await runner.cleanup()

    assert paths and set(paths) <= {"/v2.1/track", "/v2/track"}
    assert {envelope["iKey"] for envelope in received} == {INSTRUMENTATION_KEY}
    kinds = {envelope["data"]["baseType"] for envelope in received}
    assert {"RequestData", "MetricData", "MessageData"} <= kinds, kinds
    (request,) = [e for e in received if e["data"]["baseType"] == "RequestData"]
    # A CONSUMER span becomes a request in the producer's operation (its trace id).
    assert request["tags"]["ai.operation.id"] == "0af7651916cd43dd8448eb211c80319c"
    assert request["tags"]["ai.cloud.role"] == "qscore-worker"
    metric_names = {
        metric["name"]
        for envelope in received
        if envelope["data"]["baseType"] == "MetricData"
        for metric in envelope["data"]["baseData"]["metrics"]
    }
    assert {"qscore.requests", "qscore.request.duration", "qscore.dead_letters"} <= metric_names
    messages = [e["data"]["baseData"]["message"] for e in received if e["data"]["baseType"] == "MessageData"]
    assert "scored m1" in messages
    # The exporters' own log records (each transmission logs) are not exported in a loop.
    assert not [m for m in messages if "Transmission" in m or "Retrying" in m]
