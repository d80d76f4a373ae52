"""A local Durable engine: runs orchestrations of a Functions app with their activities
in-process, building the history the way the extension does and replaying the orchestrator
after every event (one completion per episode, so event ids match the SDK's numbering).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.retry import retry_delay_ms
from qscore_local.functions_host import history as h

log = logging.getLogger("qscore.functions.local")

ActivityFn = Callable[[str | None], Coroutine[Any, Any, str]]


@dataclass
class InstanceRecord:
    instance_id: str
    name: str
    input_json: str | None
    status: str = "Pending"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def status_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "createdTime": self.created.isoformat(),
            "lastUpdatedTime": self.updated.isoformat(),
            "input": self.input_json,
            "output": self.output if self.error is None else self.error,
            "runtimeStatus": self.status,
            "customStatus": self.custom_status,
        }


@dataclass
class _Call:
    """One activity action: its current event id and attempts so far."""

    name: str
    input_json: str | None
    retry: dict[str, Any] | None
    event_id: int
    attempts: int = 1


class _Run:
    """The state of one orchestration while it runs."""

    def __init__(self, record: InstanceRecord) -> None:
        self.record = record
        self.next_id = 0
        self.seen_actions = 0
        self.pending: dict[asyncio.Task[Any], tuple[str, _Call]] = {}

    def allocate(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class LocalDurableEngine:
    def __init__(
        self, orchestrators: dict[str, Callable[[Any], str]], activities: dict[str, ActivityFn]
    ) -> None:
        self.orchestrators = orchestrators
        self.activities = activities
        self.instances: dict[str, InstanceRecord] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, name: str, instance_id: str, input_json: str | None) -> InstanceRecord:
        """Start (or restart) an instance in the background; KeyError for an unknown orchestrator."""
        handle = self.orchestrators[name]
        record = InstanceRecord(instance_id=instance_id, name=name, input_json=input_json)
        self.instances[instance_id] = record
        task = asyncio.create_task(self._run(handle, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def wait(self, instance_id: str, limit_s: float = 60.0) -> InstanceRecord:
        record = self.instances[instance_id]
        await asyncio.wait_for(record.done.wait(), limit_s)
        return record

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, handle: Callable[[Any], str], record: InstanceRecord) -> None:
        run = _Run(record)
        record.history = [h.orchestrator_started(), h.execution_started(record.name, record.input_json)]
        record.status = "Running"
        try:
            while not self._episode(handle, run):
                if not run.pending:
                    raise RuntimeError("orchestrator is waiting but nothing is scheduled")
                finished, _ = await asyncio.wait(run.pending, return_when=asyncio.FIRST_COMPLETED)
                record.history.append(h.orchestrator_started())
                first = min(finished, key=lambda task: run.pending[task][1].event_id)
                self._complete(run, first)
        except Exception as exc:
            log.exception("orchestration %s failed", record.instance_id)
            record.status, record.error = "Failed", str(exc)
        finally:
            for task in run.pending:
                task.cancel()
            record.updated = datetime.now(UTC)
            record.done.set()

    def _episode(self, handle: Callable[[Any], str], run: _Run) -> bool:
        """Replay the orchestrator once; schedule its new actions. True when it has finished."""
        record = run.record
        episode = h.run_episode(handle, record.instance_id, record.history, record.input_json)
        h.check_determinism(record.history, episode.actions)
        record.custom_status = episode.custom_status
        for action in episode.actions[run.seen_actions :]:
            self._schedule(run, action)
        run.seen_actions = len(episode.actions)
        record.history.append(h.orchestrator_completed())
        record.updated = datetime.now(UTC)
        if episode.error is not None:
            record.status, record.error = "Failed", episode.error
            return True
        if episode.done:
            record.status, record.output = "Completed", episode.output
            return True
        return False

    def _schedule(self, run: _Run, action: dict[str, Any]) -> None:
        name = action.get("functionName")
        if name not in self.activities:
            raise RuntimeError(f"the local engine runs activities only; got action {action}")
        input_value = action.get("input")
        input_json = (
            input_value if isinstance(input_value, str) or input_value is None else json.dumps(input_value)
        )
        call = _Call(
            name=name, input_json=input_json, retry=action.get("retryOptions"), event_id=run.allocate()
        )
        self._start_activity(run, call)

    def _start_activity(self, run: _Run, call: _Call) -> None:
        run.record.history.append(h.task_scheduled(call.event_id, call.name, call.input_json))
        task: asyncio.Task[str] = asyncio.create_task(self.activities[call.name](call.input_json))
        run.pending[task] = ("activity", call)

    def _complete(self, run: _Run, task: asyncio.Task[Any]) -> None:
        kind, call = run.pending.pop(task)
        events = run.record.history
        if kind == "timer":
            timer_id = int(task.result())
            events.append(h.timer_fired(timer_id, datetime.now(UTC)))
            if call.retry is not None and call.attempts < int(call.retry.get("maxNumberOfAttempts", 1)):
                call.attempts += 1
                call.event_id = run.allocate()
                self._start_activity(run, call)
            return
        error = task.exception()
        if error is None:
            events.append({**h.task_completed(call.event_id, None), "Result": task.result()})
            return
        events.append(h.task_failed(call.event_id, str(error) or type(error).__name__, type(error).__name__))
        if call.retry is not None:
            delay_s = retry_delay_ms(call.retry, call.attempts) / 1000
            timer_id = run.allocate()
            events.append(h.timer_created(timer_id, datetime.now(UTC) + timedelta(seconds=delay_s)))
            run.pending[asyncio.create_task(_timer(timer_id, delay_s))] = ("timer", call)


async def _timer(timer_id: int, delay_s: float) -> int:
    await asyncio.sleep(delay_s)
    return timer_id
