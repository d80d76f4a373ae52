"""Durable history events and one orchestrator episode, in the JSON the extension exchanges with
the Python worker (see azure.durable_functions.models.history).

Used by the local engine to drive orchestrations and by tests to build histories by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.history import HistoryEventType as E

OUT_OF_PROC_MARKER = "$OutOfProcData$:"


def _stamp(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).isoformat()


def event(kind: E, event_id: int = -1, *, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": _stamp(at), **fields}


def orchestrator_started(at: datetime | None = None) -> dict[str, Any]:
    return event(E.ORCHESTRATOR_STARTED, at=at)


def orchestrator_completed(at: datetime | None = None) -> dict[str, Any]:
    return event(E.ORCHESTRATOR_COMPLETED, at=at)


def execution_started(name: str, input_json: str | None, at: datetime | None = None) -> dict[str, Any]:
    return event(E.EXECUTION_STARTED, at=at, Name=name, Input=input_json, Version="")


def task_scheduled(event_id: int, name: str, input_json: str | None = None) -> dict[str, Any]:
    return event(E.TASK_SCHEDULED, event_id, Name=name, Input=input_json)


def task_completed(scheduled_id: int, result: Any) -> dict[str, Any]:
    return event(E.TASK_COMPLETED, TaskScheduledId=scheduled_id, Result=json.dumps(result))


def task_failed(scheduled_id: int, reason: str, details: str = "") -> dict[str, Any]:
    return event(E.TASK_FAILED, TaskScheduledId=scheduled_id, Reason=reason, Details=details)


def timer_created(event_id: int, fire_at: datetime) -> dict[str, Any]:
    return event(E.TIMER_CREATED, event_id, FireAt=fire_at.isoformat())


def timer_fired(timer_id: int, fire_at: datetime) -> dict[str, Any]:
    return event(E.TIMER_FIRED, TimerId=timer_id, FireAt=fire_at.isoformat())


def context_json(instance_id: str, history: list[dict[str, Any]], input_json: str | None) -> str:
    return json.dumps(
        {
            "history": history,
            "instanceId": instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "input": input_json,
        }
    )


@dataclass
class Episode:
    """What one orchestrator invocation returned: every action since the start (schema V1,
    flattened), and whether it finished, with its output or error."""

    done: bool
    actions: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None
    error: str | None = None
    custom_status: Any = None


def _episode(state: dict[str, Any], error: str | None = None) -> Episode:
    flat = [
        action
        for group in state.get("actions", [])
        for action in (group if isinstance(group, list) else [group])
    ]
    return Episode(
        done=bool(state.get("isDone")),
        actions=flat,
        output=state.get("output"),
        error=error or state.get("error"),
        custom_status=state.get("customStatus"),
    )


def run_episode(
    handle: Callable[[Any], str], instance_id: str, history: list[dict[str, Any]], input_json: str | None
) -> Episode:
    """Invoke an orchestrator function (as `Orchestrator.create` built it) on a history."""
    from azure.functions import meta
    from azure.functions.durable_functions import OrchestrationTriggerConverter

    context = OrchestrationTriggerConverter.decode(
        meta.Datum(context_json(instance_id, history, input_json), "json"), trigger_metadata=None
    )
    try:
        return _episode(json.loads(handle(context)))
    except Exception as exc:
        text = str(exc)
        if OUT_OF_PROC_MARKER not in text:
            raise
        message, state = text.split(OUT_OF_PROC_MARKER, 1)
        return _episode(json.loads(state), error=message.strip())


class NonDeterministicOrchestration(Exception):
    """The orchestrator scheduled something other than what its history says it scheduled."""


def scheduled_in_history(history: list[dict[str, Any]]) -> list[str]:
    """Names of the actions the history says were scheduled, one per action. A retry's re-run
    directly follows the TimerFired of its failed attempt and has the failed task's name; after
    the last attempt DTFx fires one more timer, and what follows that is a new action."""
    names: list[str] = []
    name_of: dict[int, str] = {}  # TaskScheduled event id -> activity name
    last_failed: str | None = None
    timer_for: dict[int, str | None] = {}  # retry timer id -> the name of the task that failed
    rerun_of: str | None = None
    for item in history:
        kind = item["EventType"]
        if kind == E.TASK_SCHEDULED:
            name_of[item["EventId"]] = item["Name"]
            if item["Name"] != rerun_of:
                names.append(item["Name"])
        elif kind == E.TASK_FAILED:
            last_failed = name_of.get(item["TaskScheduledId"])
        elif kind == E.TIMER_CREATED:
            timer_for[item["EventId"]], last_failed = last_failed, None
        rerun_of = timer_for.get(item["TimerId"]) if kind == E.TIMER_FIRED else None
    return names


def check_determinism(history: list[dict[str, Any]], actions: list[dict[str, Any]]) -> None:
    """Raise if a replay schedules different activities than the history recorded (as the
    Durable extension does), e.g. after an orchestrator was changed under running instances."""
    recorded = scheduled_in_history(history)
    for index, name in enumerate(recorded):
        replayed = actions[index].get("functionName") if index < len(actions) else None
        if replayed != name:
            raise NonDeterministicOrchestration(
                f"action {index}: the history scheduled {name!r}, the replay scheduled {replayed!r}"
            )
