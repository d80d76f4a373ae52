"""Worker middleware (workers/middleware/): hooks around the steps, a failing hook changes no
outcome, before_score may enrich, QSCORE_WORKER_MIDDLEWARE loads one by name.

The fast tests drive BatchScorer with the fakes of test_worker_pipeline_unit.py; the real-part
test runs the documented audit example (docs/worker.md) in a worker on the local bus and Triton,
beside a middleware that raises in every hook.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ReplyStatus
from qscore.settings import SettingsError
from qscore.telemetry import InMemoryTelemetry
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)
from tests.test_worker_pipeline_unit import DeadlineBackend, _held, scorer_on_fakes
from workers.held import HeldRequest
from workers.middleware import Middleware, MiddlewareStack, Replied, ScoreBatch, ScoreResult, Settled
from workers.middleware.loading import load_middleware
from workers.middleware.stack import FAILURES_METRIC
from workers.settings import WorkerSettings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "worker.md"
AUDIT_MODULE = Path(__file__).resolve().parent.parent / "qscore" / "middleware" / "audit.py"


class Recorder(Middleware):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def before_score(self, batch: ScoreBatch) -> None:
        self.calls.append("before_score")

    async def after_score(self, result: ScoreResult) -> None:
        self.calls.append("after_score" if result.scored is not None else "after_score:failed")

    async def after_reply(self, replied: Replied) -> None:
        self.calls.append(f"after_reply:{len(replied.sent)}")

    async def after_settle(self, settled: Settled) -> None:
        self.calls.append(f"after_settle:{settled.outcome}:{len(settled.messages)}")


class Exploding(Middleware):
    """Raises in every hook but startup, and counts the calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)

    def _boom(self, hook: str) -> None:
        self.calls[hook] += 1
        raise RuntimeError(f"{hook} exploded")

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        self._boom("after_receive")

    async def after_validate(self, request: HeldRequest) -> None:
        self._boom("after_validate")

    async def before_score(self, batch: ScoreBatch) -> None:
        self._boom("before_score")

    async def after_score(self, result: ScoreResult) -> None:
        self._boom("after_score")

    async def after_reply(self, replied: Replied) -> None:
        self._boom("after_reply")

    async def after_settle(self, settled: Settled) -> None:
        self._boom("after_settle")

    async def after_drain(self) -> None:
        self._boom("after_drain")

    async def shutdown(self) -> None:
        self._boom("shutdown")


class Ones(Middleware):
    """Request enrichment: every request's pixels become ones."""

    async def before_score(self, batch: ScoreBatch) -> list[HeldRequest]:
        enriched = []
        for request in batch.requests:
            item = request.prepared.item
            arrays = {name: np.ones_like(array) for name, array in item.arrays.items()}
            prepared = dataclasses.replace(request.prepared, item=dataclasses.replace(item, arrays=arrays))
            enriched.append(dataclasses.replace(request, prepared=prepared))
        return enriched


class Shrinking(Middleware):
    async def before_score(self, batch: ScoreBatch) -> list[HeldRequest]:
        return list(batch.requests[:1])  # not allowed: the batch goes on as it was


class SeenInputs(DeadlineBackend):
    async def infer(self, model: str, inputs: Any, **options: Any) -> Any:
        self.seen = inputs["pixels"]
        return await super().infer(model, inputs, **options)


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=30)


async def test_the_hooks_run_around_score_reply_and_settle() -> None:
    recorder = Recorder()
    scorer, messages, _ = scorer_on_fakes(DeadlineBackend(takes_s=0), MiddlewareStack([recorder]))
    await scorer.handle(("digits", "2"), [_held("a", _later()), _held("b", _later())])
    assert recorder.calls == ["before_score", "after_score", "after_settle:completed:2", "after_reply:2"]
    assert sorted(messages.completed) == ["a", "b"]


async def test_a_raising_middleware_changes_no_outcome(
    caplog: pytest.LogCaptureFixture, telemetry_capture: InMemoryTelemetry
) -> None:
    exploding, recorder = Exploding(), Recorder()
    stack = MiddlewareStack([exploding, recorder])
    scorer, messages, replies = scorer_on_fakes(DeadlineBackend(takes_s=0), stack)
    for round_ in range(3):
        await scorer.handle(("digits", "2"), [_held(f"{round_}-a", _later()), _held(f"{round_}-b", _later())])
    assert [reply.status for reply in replies.sent] == [ReplyStatus.OK] * 6
    assert len(messages.completed) == 6 and not messages.abandoned
    assert recorder.calls.count("after_reply:2") == 3  # the next middleware still ran each time
    assert stack.failures[("Exploding", "before_score")] == 3
    # The first failure of each hook is logged with its traceback, the repeats are not.
    logged = [r for r in caplog.records if "middleware Exploding failed in" in r.getMessage()]
    assert len(logged) == len({"before_score", "after_score", "after_reply", "after_settle"})
    counted = {
        point.attributes["hook"]: point.value  # type: ignore[attr-defined]
        for point in telemetry_capture.metric_points(FAILURES_METRIC)
        if point.attributes["middleware"] == "Exploding"  # type: ignore[attr-defined]
    }
    assert counted == {"before_score": 3, "after_score": 3, "after_reply": 3, "after_settle": 3}


async def test_before_score_may_enrich_the_requests_and_nothing_else() -> None:
    backend = SeenInputs(takes_s=0)
    stack = MiddlewareStack([Shrinking(), Ones()])
    scorer, messages, replies = scorer_on_fakes(backend, stack)
    await scorer.handle(("digits", "2"), [_held("a", _later()), _held("b", _later())])
    assert backend.seen.shape == (2, 64) and bool((backend.seen == 1).all())
    assert len(replies.sent) == 2 and sorted(messages.completed) == ["a", "b"]
    assert stack.failures[("Shrinking", "before_score")] == 1


def test_only_the_hooks_a_middleware_overrides_are_called() -> None:
    stack = MiddlewareStack([Recorder(), Middleware()])
    assert [type(m).__name__ for m in stack._hooked["before_score"]] == ["Recorder"]
    assert stack._hooked["after_validate"] == ()


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("no-colon", "is not package.module:factory"),
        ("no_such_module_here:Factory", "cannot import no_such_module_here"),
        ("workers.middleware.audit:Missing", "has no callable Missing"),
        ("json:dumps", "dumps() failed"),
        ("logging:getLogger", "returned RootLogger, not a qscore.middleware.Middleware"),
    ],
)
def test_a_bad_middleware_reference_is_one_line_naming_the_variable(reference: str, says: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_middleware([reference], variable="QSCORE_WORKER_MIDDLEWARE")
    message = str(raised.value)
    assert message.startswith("QSCORE_WORKER_MIDDLEWARE=") and says in message and "\n" not in message


def test_the_setting_takes_references_and_refuses_a_malformed_one() -> None:
    audit = "workers.middleware.audit:AuditMiddleware"
    env = {"QSCORE_WORKER_MIDDLEWARE": f"{audit}, a.b:c"}
    assert WorkerSettings.from_env(env).worker_middleware == (audit, "a.b:c")
    with pytest.raises(SettingsError, match=re.escape("QSCORE_WORKER_MIDDLEWARE='a.b'")):
        WorkerSettings.from_env({"QSCORE_WORKER_MIDDLEWARE": "a.b"})


def test_qscore_worker_with_a_bad_middleware_variable_says_so_in_one_line() -> None:
    env = {
        **os.environ,
        "QSCORE_SERVICEBUS_CONNECTION": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b",
        "QSCORE_WORKER_MIDDLEWARE": "no_such_module_here:Audit",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from qscore_cli import main; main()", "worker", "--no-health"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.startswith("error: QSCORE_WORKER_MIDDLEWARE='no_such_module_here:Audit': cannot import")


def test_the_documented_example_is_the_shipped_audit_middleware() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert AUDIT_MODULE.read_text() in blocks, "docs/worker.md must show qscore/middleware/audit.py as it is"


def _audit_outcomes(records: list[logging.LogRecord]) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if record.name == "qscore.audit":
            fields = dict(part.split("=", 1) for part in record.getMessage().split())
            outcomes[fields["request"]].append(fields["outcome"])
    return outcomes


async def test_the_audit_example_sees_every_outcome_beside_a_raising_middleware(
    bus: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qscore.audit")
    session, pixels = replies.session_id, np.zeros((1, 64))
    past = datetime.now(UTC) - timedelta(seconds=5)
    requests = [
        *(OutgoingRequest(f"good-{i}", digits_request(pixels), session_id=session) for i in range(6)),
        OutgoingRequest("late", digits_request(pixels, deadline=past), session_id=session),
        # No reply address: dead-lettered (a reachable bad request is answered since issue 24).
        OutgoingRequest("bad", json.dumps({"model": "digits", "inputs": {}}), reply_to=None),
    ]
    await send_requests(bus.connection_string, fresh_queue, requests)
    exploding = Exploding()
    settings = worker_settings(
        request_queue=fresh_queue, worker_middleware=("workers.middleware.audit:AuditMiddleware",)
    )
    async with running_worker(settings, middleware=[exploding]):
        await replies.collect(7, timeout_s=60)
        dead = await dead_letters(bus.connection_string, fresh_queue, expect=1)
    assert {name: [r.status for r in got] for name, got in replies.replies.items()} == {
        **{f"good-{i}": [ReplyStatus.OK] for i in range(6)},
        "late": [ReplyStatus.ERROR],
    }
    assert list(dead) == ["bad"] and dead["bad"].reason
    assert _audit_outcomes(caplog.records) == {
        **{f"good-{i}": ["ok"] for i in range(6)},
        "late": ["error:expired"],
        "bad": [f"dead_lettered:{dead['bad'].reason}"],
    }
    hooks = {"after_receive", "after_validate", "before_score", "after_score", "after_reply", "after_settle"}
    assert hooks | {"after_drain", "shutdown"} <= set(exploding.calls)
