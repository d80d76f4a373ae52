"""Observability on real parts: a real worker (local bus, real Triton) under a short load,
its /metrics scraped by Debian's Prometheus, the alert rules' recorded series and the
dashboard's queries (but the model-quality row's, tests/test_model_quality.py) evaluated
against what was scraped, and one trace from the producer's send through the worker's process
and batch spans to the reply arriving back.

One module-scoped run feeds every test (about 15 s): the load has two model versions (the
canary panels and rule need both), one malformed request (a dead letter) and one Triton call
that fails as unavailable (an abandon, then the redelivery is scored).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from qscore import telemetry
from qscore.inference import TritonClient
from qscore.inference.errors import InferenceUnavailable
from qscore.producer import OutgoingRequest as ProducerRequest
from qscore.producer import ProducerSettings, ScoringProducer
from tests.fixtures.dashboard import QUALITY_ROW, concrete, load_dashboard, panels_by_row
from tests.fixtures.ports import free_port
from tests.fixtures.prometheus import LocalPrometheus, start_prometheus
from tests.fixtures.worker import OutgoingRequest, running_worker, send_requests
from workers.telemetry import WorkerTelemetry

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "monitoring" / "qscore.rules.yaml"
FALLBACKS = "qscore.sdk_hook.fallbacks"  # recorded by the fast path; any instrument must show


class FirstCallUnavailable:
    """Real Triton, except that the first inference fails as unavailable (an outage blip)."""

    def __init__(self, client: TritonClient) -> None:
        self._client = client
        self.calls = 0

    async def model_spec(self, model: str, version: str = "") -> Any:
        return await self._client.model_spec(model, version)

    async def is_ready(self) -> bool:
        return await self._client.is_ready()

    async def infer(self, model: str, inputs: Any, *, version: str = "", outputs: Any = None) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise InferenceUnavailable("test: first call refused")
        return await self._client.infer(model, inputs, version=version, outputs=outputs)


@dataclass
class ObservedRun:
    metrics_text: str
    spans: InMemorySpanExporter
    prometheus: LocalPrometheus
    outcomes: list[Any]


async def _load(connection: str, queue: str) -> list[Any]:
    settings = ProducerSettings(connection=connection, request_queue=queue, reply_timeout_s=60)
    pixels = np.random.default_rng(7).uniform(0, 16, size=(40, 64)).astype(np.float32)
    requests = [
        ProducerRequest.build("digits", {"pixels": pixels[i : i + 1]}, version="1" if i % 4 == 0 else "2")
        for i in range(len(pixels))
    ]
    past = datetime.now(UTC) - timedelta(seconds=5)
    expired = ProducerRequest.build("digits", {"pixels": pixels[:1]}, deadline=past)  # an error reply
    async with ScoringProducer(settings=settings) as producer:
        outcomes = await producer.score_many([expired])
        for start in range(0, len(requests), 10):  # a few waves, so the scrapes see rates
            outcomes += await producer.score_many(requests[start : start + 10])
            await asyncio.sleep(0.6)
    return outcomes


@pytest.fixture(scope="module")
async def observed(
    bus: Any, triton: Any, tmp_path_factory: pytest.TempPathFactory, fresh_queue_module: str
) -> AsyncIterator[ObservedRun]:
    spans = InMemorySpanExporter()
    telemetry.configure("qscore-worker", span_exporters=[spans], prometheus=True, set_globals=False)
    port = free_port()
    data_dir = tmp_path_factory.mktemp("prometheus")
    with start_prometheus([f"127.0.0.1:{port}"], data_dir, rule_files=[RULES]) as prometheus:
        client = TritonClient(triton.grpc_url, timeout_s=30)
        settings = _settings(bus, triton, data_dir, fresh_queue_module, port)
        worker_telemetry = WorkerTelemetry(spans=True, queue=fresh_queue_module)
        try:
            async with running_worker(
                settings, telemetry=worker_telemetry, backend=FirstCallUnavailable(client)
            ):
                telemetry.meter().create_counter(FALLBACKS, unit="{batch}").add(1, {"hook": "test"})
                # /metrics is up (the health server starts once the first session has opened)
                # and scraped before the load, so the load's waves land between scrapes: rates.
                await _wait_for_scrapes(prometheus, 1)
                # No reply address: dead-lettered (one with an address is answered, issue 24).
                bad = OutgoingRequest(
                    "bad-shape", json.dumps({"model": "digits", "inputs": {}}), reply_to=None
                )
                await send_requests(bus.connection_string, fresh_queue_module, [bad])
                outcomes = await _load(bus.connection_string, fresh_queue_module)
                await _wait_for_scrapes(prometheus, 3)
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/metrics") as response,
                ):
                    assert response.status == 200
                    assert response.headers["Content-Type"].startswith("text/plain")
                    text = await response.text()
                yield ObservedRun(text, spans, prometheus, outcomes)
        finally:
            await client.close()
            telemetry.reset()


def _settings(bus: Any, triton: Any, data_dir: Path, queue: str, port: int) -> Any:
    from workers.settings import WorkerSettings

    return WorkerSettings(
        servicebus_connection=bus.connection_string,
        triton_url=triton.grpc_url,
        request_queue=queue,
        health_port=port,
        health_host="127.0.0.1",
        registry_path=data_dir / "registry.json",
        drain_grace_s=10.0,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
        receive_wait_s=0.5,
        worker_id="observed-worker",
        interaction_log=data_dir / "interactions.jsonl",  # its dropped counter is a recorded signal
    )


async def _wait_for_scrapes(prometheus: LocalPrometheus, more: int, timeout_s: float = 20) -> None:
    """Until `more` further scrapes succeeded (the final counts are in, the rules evaluated)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    target = await prometheus.samples_of("qscore-worker") + more
    while await prometheus.samples_of("qscore-worker") < target:
        assert loop.time() < deadline, "prometheus did not scrape the worker"
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # two rule evaluations after the last scrape


@pytest.fixture(scope="module")
def fresh_queue_module(bus: Any) -> str:
    """A queue of the session bus's fresh pool, for this module's one worker."""
    from tests.fixtures.bus import FRESH_QUEUE_POOL, _fresh_names

    index = next(_fresh_names)
    assert index < FRESH_QUEUE_POOL, "raise FRESH_QUEUE_POOL"
    return f"test-fresh-{index}"


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_endpoint_has_conventional_names(observed: ObservedRun) -> None:
    assert all(outcome.reply is not None for outcome in observed.outcomes)
    families = _families(observed.metrics_text)
    assert families["qscore_requests"].type == "counter"  # exposed as qscore_requests_total
    duration = families["qscore_request_duration_seconds"]
    assert duration.type == "histogram"
    stages = {s.labels["stage"] for s in duration.samples if s.name.endswith("_count")}
    assert stages == {"queue_wait", "batch_wait", "inference", "total"}
    versions = {s.labels["version"] for s in duration.samples if s.name.endswith("_count")}
    assert {"1", "2"} <= versions  # and "" for the expired request (rejected before routing)
    assert families["qscore_batch_size"].type == "histogram"
    reasons = {s.labels["reason"] for s in families["qscore_dead_letters"].samples}
    assert "no_reply_address" in reasons
    abandons = {s.labels["reason"] for s in families["qscore_abandons"].samples}
    assert "inference_unavailable" in abandons
    assert families["qscore_in_flight"].type == "gauge"
    limit = families["qscore_in_flight_limit"].samples[0].value
    assert limit > 0
    # Any instrument the worker registers shows up, e.g. the fast path's fallback counter.
    assert "qscore_sdk_hook_fallbacks_total" in _sample_names(observed.metrics_text)


def test_one_trace_from_send_to_reply(observed: ObservedRun) -> None:
    finished = observed.spans.get_finished_spans()
    sends = [s for s in finished if s.name == "qscore.send" and s.kind == SpanKind.PRODUCER]
    processes = {s.context.span_id: s for s in finished if s.name == "qscore.worker.process"}
    batches = [s for s in finished if s.name == "qscore.worker.batch"]
    replies = [s for s in finished if s.name == "qscore.producer reply"]
    assert sends and processes and batches and replies
    send = sends[-1]
    (process,) = [p for p in processes.values() if p.context.trace_id == send.context.trace_id]
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    # The batch span is a root linked to every request span it served, this one among them.
    batch = next(b for b in batches if process.context.span_id in {link.context.span_id for link in b.links})
    assert batch.parent is None
    assert all(link.context.span_id in processes for link in batch.links)
    assert batch.attributes is not None and batch.attributes["messaging.batch.message_count"] == len(
        batch.links
    )
    # The reply carried the worker span's traceparent: the producer's trace ends with it.
    (reply,) = [r for r in replies if r.context.trace_id == send.context.trace_id]
    assert reply.parent is not None and reply.parent.span_id == process.context.span_id


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


async def test_every_recorded_signal_has_data_in_a_real_scrape(observed: ObservedRun) -> None:
    """Prometheus loads the rules; each recorded series has data from the scraped worker. The
    alerts read only recorded series, so their inputs are covered (their conditions are false)."""
    rules = _rules()
    recorded = [rule["record"] for rule in rules if "record" in rule]
    health = await observed.prometheus.rule_health()
    assert {name: state for name, state in health.items() if state != "ok"} == {}
    assert set(health) == set(recorded) | {rule["alert"] for rule in rules if "alert" in rule}
    empty = [name for name in recorded if not await observed.prometheus.query(name)]
    assert empty == []
    for rule in rules:
        if "alert" in rule:
            series = set(re.findall(r"\bqscore[_:][\w:]+", rule["expr"]))
            assert series and series <= set(recorded), rule["alert"]


def _panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every panel query but the model-quality row's: those read what the model-quality job
    exports, not the worker, and test_model_quality.py's
    test_the_quality_panels_show_the_jobs_output_per_version checks them on a scrape of it."""
    quality = {panel["id"] for panel in panels_by_row(dashboard)[QUALITY_ROW]}
    queries = []
    for panel in dashboard["panels"]:
        if panel["id"] in quality:
            continue
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    return queries


async def test_dashboard_queries_name_exposed_metrics_and_return_data(observed: ObservedRun) -> None:
    dashboard = load_dashboard()
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == [
        "Traffic and errors",
        "Latency: where time goes",
        "Batching",
        "Queue health",
        "Canary by version",
        QUALITY_ROW,
    ]
    exposed = _sample_names(observed.metrics_text)
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    queries = _panel_queries(dashboard)
    assert len(queries) >= 10
    missing, empty = [], []
    for title, expr in queries:
        missing += [f"{title}: {name}" for name in set(re.findall(r"\bqscore_\w+", expr)) - exposed]
        missing += [f"{title}: {name}" for name in set(re.findall(r"\bqscore:[\w:]+", expr)) - recorded]
        if not await observed.prometheus.query(concrete(expr)):
            empty.append(title)
    assert missing == []
    assert empty == []


async def test_metric_scaler_query_has_data(observed: ObservedRun) -> None:
    from tests.test_monitoring_rules import scaler_queries

    queries = scaler_queries()
    assert queries
    for query in queries:
        result = await observed.prometheus.query(query)
        # The worker served requests in the last minute: the metric is a positive number.
        assert result and float(result[0]["value"][1]) > 0, (query, result)
