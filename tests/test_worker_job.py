"""Job mode (KEDA ScaledJob): exit after N settled messages, exit when idle, no prefetch; against
the real bus and Triton, plus the ScaledJob manifest's settings read back through WorkerSettings."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qscore.contracts import ReplyStatus
from qscore_local.bus.stats import queue_counts
from qscore_local.workers import WORKER_COMMAND
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    send_requests,
)
from workers.app import run_worker
from workers.job import ABANDONED, COMPLETED, DEAD_LETTERED, JobLimits
from workers.settings import WorkerSettings
from workers.signals import StopRequest
from workers.telemetry import WorkerTelemetry

SCALEDJOB = Path(__file__).parents[1] / "deploy/components/long-running-jobs/scaledjob.yaml"


def _requests(session_id: str, count: int, prefix: str) -> list[OutgoingRequest]:
    rng = np.random.default_rng(1)
    return [
        OutgoingRequest(f"{prefix}-{i}", digits_request(rng.uniform(0, 16, (1, 64))), session_id=session_id)
        for i in range(count)
    ]


async def _run_until_exit(settings: WorkerSettings, *, within_s: float = 30.0) -> float:
    """Run a worker until it exits by itself; returns how long it ran."""
    started = time.monotonic()
    await asyncio.wait_for(
        run_worker(
            settings, stop=StopRequest(), telemetry=WorkerTelemetry(enabled=False), handle_signals=False
        ),
        timeout=within_s,
    )
    return time.monotonic() - started


def test_job_limits_count_taken_and_finished() -> None:
    job = JobLimits(exit_after_messages=2)
    assert job.room == 2 and not job.done
    job.took(2)
    assert job.room == 0
    job.settled(ABANDONED, 1)  # back on the queue: its place is free again
    assert job.room == 1 and not job.done
    job.took(1)
    job.settled(COMPLETED, 1)
    job.settled(DEAD_LETTERED, 1)
    assert job.done and "2 message(s) settled" in (job.exit_reason() or "")
    unlimited = JobLimits()
    assert unlimited.room is None and not unlimited.done and unlimited.exit_reason() is None


def test_job_limits_idle_clock() -> None:
    job = JobLimits(exit_when_idle_s=0.05)
    assert not job.idle_too_long
    job.idle_since -= 0.1
    assert job.idle_too_long and "nothing received" in (job.exit_reason() or "")
    job.busy()
    assert not job.idle_too_long


def test_job_settings_validate() -> None:
    with pytest.raises(ValueError, match="exit_after_messages"):
        WorkerSettings(exit_after_messages=0)
    with pytest.raises(ValueError, match="exit_when_idle_s"):
        WorkerSettings(exit_when_idle_s=0)
    with pytest.raises(ValueError, match="prefetch"):
        WorkerSettings(prefetch=-1)
    assert WorkerSettings(prefetch=0).prefetch == 0


def test_scaledjob_manifest_env_configures_job_mode() -> None:
    """The ScaledJob's literal QSCORE_* values are settings this worker reads (names and values)."""
    document = yaml.safe_load(SCALEDJOB.read_text())
    (container,) = document["spec"]["jobTargetRef"]["template"]["spec"]["containers"]
    literal = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    qscore_env = {name: value for name, value in literal.items() if name.startswith("QSCORE_")}
    assert {"QSCORE_EXIT_AFTER_MESSAGES", "QSCORE_EXIT_WHEN_IDLE_S", "QSCORE_PREFETCH"} <= set(qscore_env)
    known = {f"QSCORE_{name.upper()}" for name in WorkerSettings.__dataclass_fields__}
    # QSCORE_SERVICEBUS_NAMESPACE_NAME only feeds $(...) expansion of QSCORE_SERVICEBUS_NAMESPACE.
    named = {item["name"] for item in container["env"]} - {"QSCORE_SERVICEBUS_NAMESPACE_NAME"}
    assert {name for name in named if name.startswith("QSCORE_")} <= known
    settings = WorkerSettings.from_env({**qscore_env, "QSCORE_SERVICEBUS_NAMESPACE": "ns"})
    assert settings.exit_after_messages == 1 and settings.exit_when_idle_s == 30 and settings.prefetch == 0


async def test_exit_after_messages_takes_only_its_share(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    await send_requests(bus.connection_string, fresh_queue, _requests(replies.session_id, 3, "job"))
    one = worker_settings(request_queue=fresh_queue, prefetch=0, exit_after_messages=1)
    await _run_until_exit(one)
    await replies.collect(1, timeout_s=10)
    assert len(replies.replies) == 1
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    # The other two are back on the queue at once: not locked, not redelivered.
    assert (counts.active, counts.locked) == (2, 0)
    await _run_until_exit(worker_settings(request_queue=fresh_queue, prefetch=0, exit_after_messages=2))
    await replies.collect(3, timeout_s=10, settle_s=0.5)
    assert sorted(replies.replies) == ["job-0", "job-1", "job-2"]
    assert all(len(got) == 1 and got[0].status == ReplyStatus.OK for got in replies.replies.values())
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert (counts.active, counts.locked) == (0, 0)


async def test_a_dead_lettered_message_counts_as_settled(
    bus: Any, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    await send_requests(
        bus.connection_string, fresh_queue, [OutgoingRequest("bad-0", b"not json", reply_to=None)]
    )
    await _run_until_exit(worker_settings(request_queue=fresh_queue, exit_after_messages=1))
    dead = await dead_letters(bus.connection_string, fresh_queue, wait_s=0.5)
    # No reply address: dead-lettered (with one, a body that is not JSON is answered, issue 24).
    assert dead["bad-0"].reason == "no_reply_address"


async def test_exit_when_idle_on_an_empty_queue(
    fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    ran_s = await _run_until_exit(
        worker_settings(request_queue=fresh_queue, prefetch=0, exit_when_idle_s=1.0, receive_wait_s=0.2)
    )
    assert ran_s < 10


async def test_job_mode_process_exits_zero(bus: Any, triton: Any, fresh_queue: str, tmp_path: Path) -> None:
    """`qscore worker` as the Job's container runs it: one message, then exit code 0."""
    session = f"job-{os.getpid()}"
    await send_requests(bus.connection_string, fresh_queue, _requests(session, 1, "proc"))
    env = {
        **os.environ,
        "QSCORE_SERVICEBUS_CONNECTION": bus.connection_string,
        "QSCORE_TRITON_URL": triton.grpc_url,
        "QSCORE_REQUEST_QUEUE": fresh_queue,
        "QSCORE_REGISTRY_PATH": str(tmp_path / "registry.json"),
        "QSCORE_EXIT_AFTER_MESSAGES": "1",
        "QSCORE_EXIT_WHEN_IDLE_S": "30",
        "QSCORE_PREFETCH": "0",
    }
    process = await asyncio.create_subprocess_exec(
        *WORKER_COMMAND,
        "--no-health",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    assert b"exit_after_messages" in output
    collector = ReplyCollector(bus.connection_string, session_id=session)
    try:
        await collector.collect(1, timeout_s=10)
    finally:
        await collector.close()
    assert list(collector.replies) == ["proc-0"]
