"""Replay the orchestrator from hand-built Durable histories and check the actions it returns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import names
from functions.payloads import (
    Carried,
    Group,
    GroupOutcome,
    OrchestrationInput,
    ReleaseInput,
    SendSummary,
    ShadowOutcome,
    ValidationResult,
)
from functions.settings import RetryPolicy
from qscore_local.functions_host import history as h
from qscore_local.functions_host.app_index import functions_by_trigger

RETRY = RetryPolicy(first_retry_ms=1000, backoff_coefficient=2.0, max_retry_ms=8000, max_attempts=2)
BATCH = Carried(inline='{"messages": []}', size_bytes=16)
INPUT = OrchestrationInput(batch=BATCH, message_count=3, retry=RETRY).model_dump(mode="json")
GROUPS = [
    Group(model="digits", version="1", request_ids=["a", "b"], documents=["sha256-group1"]),
    Group(model="digits", version="2", request_ids=["c"], documents=["sha256-group2"]),
]
ORIGINALS = Carried(ref="sha256-batch", size_bytes=16)
VALIDATED = ValidationResult(
    groups=GROUPS, originals=ORIGINALS, stored=["sha256-group1", "sha256-group2", "sha256-batch"]
).model_dump(mode="json")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def orchestrator(functions_app: Any) -> Any:
    return functions_by_trigger(functions_app, "orchestrationTrigger")[names.ORCHESTRATOR].get_user_function()


def replay(orchestrator: Any, events: list[dict[str, Any]]) -> h.Episode:
    start = [h.orchestrator_started(T0), h.execution_started(names.ORCHESTRATOR, json.dumps(INPUT), T0)]
    return h.run_episode(orchestrator, "qscore-test", start + events, json.dumps(INPUT))


def replies_of(group: Group) -> str:
    return f"sha256-replies-{group.version}"


def outcome(group: Group) -> dict[str, Any]:
    """What an inference activity returns: a reference to its stored replies and a summary."""
    return GroupOutcome(group=group, replies=replies_of(group), ok=len(group.request_ids)).model_dump(
        mode="json"
    )


def after_validation() -> list[dict[str, Any]]:
    return [
        h.task_scheduled(0, names.VALIDATE),
        h.orchestrator_completed(T0),
        h.orchestrator_started(T0),
        h.task_completed(0, VALIDATED),
    ]


def test_first_run_schedules_validation_only(orchestrator: Any) -> None:
    episode = replay(orchestrator, [])
    assert not episode.done
    assert [a["functionName"] for a in episode.actions] == [names.VALIDATE]
    assert episode.actions[0]["actionType"] == 1  # with retry: it reads the payload store and registry
    assert episode.actions[0]["retryOptions"]["maxNumberOfAttempts"] == RETRY.max_attempts
    assert episode.actions[0]["input"] == json.dumps({"batch": BATCH.model_dump(mode="json")})


def test_after_validation_one_inference_per_group_with_retry(orchestrator: Any) -> None:
    episode = replay(orchestrator, after_validation())
    inference = episode.actions[1:]
    assert [a["functionName"] for a in inference] == [names.INFER, names.INFER]
    assert {a["actionType"] for a in inference} == {1}  # CallActivityWithRetry
    assert inference[0]["retryOptions"] == {
        "firstRetryIntervalInMilliseconds": 1000,
        "maxNumberOfAttempts": 2,
        "backoffCoefficient": 2.0,
        "maxRetryIntervalInMilliseconds": 8000,
    }
    assert [json.loads(a["input"])["group"]["version"] for a in inference] == ["1", "2"]
    # Each inference activity gets its group (ids, document reference), not the batch.
    expected = [{"group": group.model_dump(mode="json")} for group in GROUPS]
    assert [json.loads(a["input"]) for a in inference] == expected
    assert episode.custom_status == {"stage": "inference", "groups": 2}


def inference_done() -> list[dict[str, Any]]:
    return [
        *after_validation(),
        h.task_scheduled(1, names.INFER),
        h.task_scheduled(2, names.INFER),
        h.orchestrator_completed(T0),
        h.orchestrator_started(T0),
        h.task_completed(1, outcome(GROUPS[0])),
        h.orchestrator_completed(T0),
        h.orchestrator_started(T0),
        h.task_completed(2, outcome(GROUPS[1])),
    ]


def test_after_inference_sends_replies_then_completes(orchestrator: Any) -> None:
    episode = replay(orchestrator, inference_done())
    assert episode.actions[-1]["functionName"] == names.SEND_REPLIES
    sent = SendSummary(sent=3, ok=3).model_dump(mode="json")
    finished = replay(
        orchestrator,
        [
            *inference_done(),
            h.task_scheduled(3, names.SEND_REPLIES),
            h.orchestrator_started(T0),
            h.task_completed(3, sent),
        ],
    )
    assert not finished.done  # no dead letters in this batch; the stored documents go
    released = finished.actions[-1]
    assert len(finished.actions) == 5 and released["functionName"] == names.RELEASE
    assert "retryOptions" not in released  # best effort: what is left expires with the store
    assert ReleaseInput.model_validate_json(released["input"]).documents == [
        "sha256-group1",
        "sha256-group2",
        "sha256-batch",
        replies_of(GROUPS[0]),
        replies_of(GROUPS[1]),
    ]
    events = [*inference_done(), h.task_scheduled(3, names.SEND_REPLIES), h.orchestrator_started(T0)]
    events += [h.task_completed(3, sent), h.task_scheduled(4, names.RELEASE), h.orchestrator_started(T0)]
    done = replay(orchestrator, [*events, h.task_completed(4, 5)])
    assert done.done and done.output["replied"] == 3 and done.output["failed_groups"] == 0
    failed_release = replay(orchestrator, [*events, h.task_failed(4, "ResourceNotFoundError")])
    assert failed_release.done and failed_release.error is None  # a leftover changes no outcome


def test_replaying_twice_gives_the_same_actions(orchestrator: Any) -> None:
    assert replay(orchestrator, inference_done()).actions == replay(orchestrator, inference_done()).actions


def test_activity_failure_is_retried_then_the_group_fails(orchestrator: Any) -> None:
    fire = T0 + timedelta(seconds=1)
    events = [
        *after_validation(),
        h.task_scheduled(1, names.INFER),
        h.task_scheduled(2, names.INFER),
        h.orchestrator_started(T0),
        h.task_completed(2, outcome(GROUPS[1])),
        h.orchestrator_started(T0),
        h.task_failed(1, "InferenceUnavailable: triton is down"),
        h.timer_created(3, fire),
    ]
    waiting = replay(orchestrator, events)
    assert not waiting.done and len(waiting.actions) == 3  # the retry is the engine's, not a new action
    events += [h.orchestrator_started(fire), h.timer_fired(3, fire), h.task_scheduled(4, names.INFER)]
    events += [
        h.orchestrator_started(fire),
        h.task_failed(4, "InferenceUnavailable: still down"),
        h.timer_created(5, fire),
    ]
    still_waiting = replay(orchestrator, events)
    assert not still_waiting.done and len(still_waiting.actions) == 3
    events += [h.orchestrator_started(fire), h.timer_fired(5, fire)]  # attempts used up
    gave_up = replay(orchestrator, events)
    send = gave_up.actions[-1]
    assert send["functionName"] == names.SEND_REPLIES
    outcomes = json.loads(send["input"])["outcomes"]
    assert outcomes[0]["failure"].startswith("InferenceUnavailable: still down")
    assert outcomes[1]["failure"] is None


def test_retry_succeeds_on_second_attempt(orchestrator: Any) -> None:
    fire = T0 + timedelta(seconds=1)
    events = [
        *after_validation(),
        h.task_scheduled(1, names.INFER),
        h.task_scheduled(2, names.INFER),
        h.orchestrator_started(T0),
        h.task_failed(1, "InferenceUnavailable"),
        h.timer_created(3, fire),
        h.orchestrator_started(T0),
        h.task_completed(2, outcome(GROUPS[1])),
        h.orchestrator_started(fire),
        h.timer_fired(3, fire),
        h.task_scheduled(4, names.INFER),
        h.orchestrator_started(fire),
        h.task_completed(4, outcome(GROUPS[0])),
    ]
    episode = replay(orchestrator, events)
    outcomes = json.loads(episode.actions[-1]["input"])["outcomes"]
    assert [o["failure"] for o in outcomes] == [None, None]


def test_non_determinism_guard(orchestrator: Any) -> None:
    events = after_validation()
    events[0] = h.task_scheduled(0, "some_other_activity")
    episode = replay(orchestrator, events)
    with pytest.raises(h.NonDeterministicOrchestration, match="some_other_activity"):
        h.check_determinism([*events[:1]], episode.actions)
    h.check_determinism(after_validation(), replay(orchestrator, after_validation()).actions)


def test_invalid_requests_are_dead_lettered(orchestrator: Any) -> None:
    from functions.payloads import Rejection

    rejected = Rejection(request_id="x", model="", code="no_reply_address", description="none")
    validated = ValidationResult(groups=[], dead_letters=[rejected]).model_dump(mode="json")
    events = [h.task_scheduled(0, names.VALIDATE), h.orchestrator_started(T0), h.task_completed(0, validated)]
    events += [h.task_scheduled(1, names.SEND_REPLIES), h.orchestrator_started(T0)]
    events.append(h.task_completed(1, SendSummary().model_dump(mode="json")))
    episode = replay(orchestrator, events)
    assert episode.actions[-1]["functionName"] == names.DEAD_LETTER
    assert json.loads(episode.actions[-1]["input"])["rejected"][0]["code"] == "no_reply_address"


SHADOW_GROUP = Group(model="digits", version="1", request_ids=["a", "b", "c"], documents=["sha256-g"])
PRODUCTION_GROUP = Group(model="digits", version="2", request_ids=["a", "b", "c"], documents=["sha256-g"])


def released(event_id: int) -> list[dict[str, Any]]:
    """The release activity scheduled and done."""
    return [
        h.task_scheduled(event_id, names.RELEASE),
        h.orchestrator_started(T0),
        h.task_completed(event_id, 1),
    ]


def replies_sent_with_shadow() -> list[dict[str, Any]]:
    """validate (one production group, one shadow group) -> infer -> send replies."""
    validated = ValidationResult(groups=[PRODUCTION_GROUP], shadow_groups=[SHADOW_GROUP])
    return [
        h.task_scheduled(0, names.VALIDATE),
        h.orchestrator_started(T0),
        h.task_completed(0, validated.model_dump(mode="json")),
        h.task_scheduled(1, names.INFER),
        h.orchestrator_started(T0),
        h.task_completed(1, outcome(PRODUCTION_GROUP)),
        h.task_scheduled(2, names.SEND_REPLIES),
        h.orchestrator_started(T0),
        h.task_completed(2, SendSummary(sent=3, ok=3).model_dump(mode="json")),
    ]


def test_shadow_group_is_scored_after_the_replies_without_retry(orchestrator: Any) -> None:
    before_send = replay(orchestrator, replies_sent_with_shadow()[:6])
    assert [a["functionName"] for a in before_send.actions] == [
        names.VALIDATE,
        names.INFER,
        names.SEND_REPLIES,
    ]
    episode = replay(orchestrator, replies_sent_with_shadow())
    assert not episode.done
    shadow = episode.actions[-1]
    assert shadow["functionName"] == names.SHADOW_INFER
    assert shadow["actionType"] == 0 and "retryOptions" not in shadow  # best effort, as in the worker
    # The group and the references of its prepared documents: no batch, no tensors.
    assert json.loads(shadow["input"]) == {"group": SHADOW_GROUP.model_dump(mode="json")}
    assert episode.custom_status == {"stage": "shadow", "groups": 1}
    scored = ShadowOutcome(group=SHADOW_GROUP, scored=3, logged=True).model_dump(mode="json")
    events = [
        *replies_sent_with_shadow(),
        h.task_scheduled(3, names.SHADOW_INFER),
        h.orchestrator_started(T0),
    ]
    events += [h.task_completed(3, scored), *released(4)]
    done = replay(orchestrator, events)
    assert done.done and done.output["shadow_scored"] == 3 and done.output["shadow_failed_groups"] == 0
    assert done.output["replied"] == 3


def test_shadow_failure_changes_no_reply(orchestrator: Any) -> None:
    events = [
        *replies_sent_with_shadow(),
        h.task_scheduled(3, names.SHADOW_INFER),
        h.orchestrator_started(T0),
    ]
    events += [h.task_failed(3, "InferenceUnavailable: triton is down"), *released(4)]
    failed = replay(orchestrator, events)
    assert failed.done and failed.error is None  # the orchestration completes
    assert failed.output["replied"] == 3 and failed.output["ok"] == 3 and failed.output["failed_groups"] == 0
    assert failed.output["shadow_failed_groups"] == 1 and failed.output["shadow_scored"] == 0
    # The reply went out before the shadow was even scheduled.
    assert [a["functionName"] for a in failed.actions][-3:-1] == [names.SEND_REPLIES, names.SHADOW_INFER]


def test_history_without_shadow_groups_replays_as_before(orchestrator: Any) -> None:
    """A batch validated before shadow groups existed (no field in the result) schedules no shadow."""
    legacy = {
        "groups": [PRODUCTION_GROUP.model_dump(mode="json")],
        "rejected_with_reply": [],
        "dead_letters": [],
    }
    events = [*replies_sent_with_shadow(), *released(3)]
    events[2] = h.task_completed(0, legacy)
    episode = replay(orchestrator, events)
    assert episode.done and episode.output["shadow_scored"] == 0
    assert names.SHADOW_INFER not in [a["functionName"] for a in episode.actions]


def test_reply_activity_failing_for_good_records_every_request(orchestrator: Any) -> None:
    """No loss: when send_replies runs out of attempts, the failures are recorded (with retry)."""
    fire = T0 + timedelta(seconds=1)
    events = [
        *inference_done(),
        h.task_scheduled(3, names.SEND_REPLIES),
        h.orchestrator_started(fire),
        h.task_failed(3, "ServiceBusConnectionError: reply link down"),
        h.timer_created(4, fire),
        h.orchestrator_started(fire),
        h.timer_fired(4, fire),
        h.task_scheduled(5, names.SEND_REPLIES),
        h.orchestrator_started(fire),
        h.task_failed(5, "ServiceBusConnectionError: still down"),
        h.timer_created(6, fire),
        h.orchestrator_started(fire),
        h.timer_fired(6, fire),  # attempts used up
    ]
    episode = replay(orchestrator, events)
    record = episode.actions[-1]
    assert record["functionName"] == names.DEAD_LETTER and record["actionType"] == 1  # with retry
    sent = json.loads(record["input"])
    assert sent["replies_failed"].startswith("ServiceBusConnectionError: still down")
    # The failure records read the bodies from the batch by reference, not from the history.
    assert sent["batch"] == ORIGINALS.model_dump(mode="json") and sent["rejected"] == []
    assert h.scheduled_in_history(events) == [names.VALIDATE, names.INFER, names.INFER, names.SEND_REPLIES]
