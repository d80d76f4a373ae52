"""The orchestrator: one instance per trigger batch (or per HTTP request).

It is replayed from its history after every activity, so it must decide the same way every time:
no I/O, no clocks, no randomness, no settings read here. Everything it needs is in its input
(the batch, or a reference to it, and the retry policy) and in the activity results.

    validate -> one inference activity per (model, version) group
             -> send replies (ok and error) -> record what cannot be answered on the failures queue
             -> one shadow inference activity per (model, shadow version) group
             -> release the payload-store documents the activities stored

The activities pass each other references into the payload store (prepared groups, replies),
never request tensors or reply bodies, so the history stays small (docs/functions.md).

Every activity that does I/O runs with the retry policy (exponential backoff). A request ends as
one reply or one failure record: bad input and undeliverable replies are recorded on the
failures queue; if the reply activity itself fails for good, every queue request of the batch
not answered otherwise is recorded there (`reply_undeliverable`). Only if recording fails for
good too does the orchestration fail, and the batch stays in its Durable history.

Shadow groups run after the replies are sent, without retry, and each failure is only counted:
a shadow result goes to the interaction log, never into a reply, as in the worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from functions import names
from functions.payloads import (
    DeadLetterInput,
    Group,
    GroupOutcome,
    InferInput,
    OrchestrationInput,
    OrchestrationOutcome,
    ReleaseInput,
    SendInput,
    SendSummary,
    ShadowOutcome,
    ValidationResult,
)
from functions.retry import BackoffRetryOptions

bp = df.Blueprint()


def _failure_text(exc: BaseException) -> str:
    # The SDK wraps an activity failure as Exception("<reason> \n <details>"); the first line is enough.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def settle_all(
    context: df.DurableOrchestrationContext, tasks: list[Any]
) -> Generator[Any, Any, list[tuple[Any, str | None]]]:
    """(result, None) or (None, failure text) per task, in order; one task failing for good does
    not hide the others' results."""
    if not tasks:
        return []
    try:
        results = yield context.task_all(tasks)
        return [(result, None) for result in results]
    except Exception:
        pass  # at least one task failed for good: look at each one
    settled: list[tuple[Any, str | None]] = []
    for task in tasks:
        try:
            settled.append(((yield task), None))
        except Exception as exc:
            settled.append((None, _failure_text(exc)))
    return settled


def collect_outcomes(
    context: df.DurableOrchestrationContext, tasks: list[Any], groups: list[Group]
) -> Generator[Any, Any, list[GroupOutcome]]:
    """All group results; a group whose retries ran out becomes a failure, the others still count."""
    settled = yield from settle_all(context, tasks)
    return [
        GroupOutcome.model_validate(result) if failure is None else GroupOutcome(group=group, failure=failure)
        for (result, failure), group in zip(settled, groups, strict=True)
    ]


def run_shadows(
    context: df.DurableOrchestrationContext, groups: list[Group]
) -> Generator[Any, Any, tuple[int, int]]:
    """Score each shadow group once (best effort, no retry); (requests scored, groups failed)."""
    tasks = [
        context.call_activity(names.SHADOW_INFER, InferInput(group=group).model_dump(mode="json"))
        for group in groups
    ]
    settled = yield from settle_all(context, tasks)
    scored = sum(
        ShadowOutcome.model_validate(result).scored for result, failure in settled if failure is None
    )
    return scored, sum(failure is not None for _, failure in settled)


def send_and_record(
    context: df.DurableOrchestrationContext,
    started: OrchestrationInput,
    validation: ValidationResult,
    outcomes: list[GroupOutcome],
) -> Generator[Any, Any, tuple[SendSummary, int]]:
    """Send the replies, then record everything that ends without one; (summary, recorded)."""
    retry = BackoffRetryOptions(started.retry)
    send = SendInput(outcomes=outcomes, rejected_replies=validation.rejected_replies)
    replies_failed: str | None = None
    try:
        sent = yield context.call_activity_with_retry(names.SEND_REPLIES, retry, send.model_dump(mode="json"))
        summary = SendSummary.model_validate(sent)
    except Exception as exc:
        summary, replies_failed = SendSummary(), _failure_text(exc)
    unanswered = [*validation.dead_letters, *summary.unanswered]
    if not unanswered and replies_failed is None:
        return summary, 0
    store = DeadLetterInput(
        instance_id=context.instance_id,
        rejected=unanswered,
        batch=validation.originals or started.batch,
        replies_failed=replies_failed,
    )
    recorded = yield context.call_activity_with_retry(names.DEAD_LETTER, retry, store.model_dump(mode="json"))
    return summary, int(recorded)


def release(
    context: df.DurableOrchestrationContext, validation: ValidationResult, outcomes: list[GroupOutcome]
) -> Generator[Any, Any, None]:
    """Delete the stored documents (best effort: what is left expires with the store's lifecycle)."""
    documents = [*validation.stored, *(outcome.replies for outcome in outcomes if outcome.replies)]
    if not documents:
        return
    # A leftover document costs storage only (the store's lifecycle removes it); the outcome is
    # settled by now, so a failed release changes nothing.
    with contextlib.suppress(Exception):
        yield context.call_activity(names.RELEASE, ReleaseInput(documents=documents).model_dump(mode="json"))


def score_messages(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    started = OrchestrationInput.model_validate(context.get_input())
    retry = BackoffRetryOptions(started.retry)
    checked = yield context.call_activity_with_retry(
        names.VALIDATE, retry, {"batch": started.batch.model_dump(mode="json")}
    )
    validation = ValidationResult.model_validate(checked)
    context.set_custom_status({"stage": "inference", "groups": len(validation.groups)})
    tasks = [
        context.call_activity_with_retry(names.INFER, retry, InferInput(group=group).model_dump(mode="json"))
        for group in validation.groups
    ]
    outcomes = yield from collect_outcomes(context, tasks, validation.groups)
    context.set_custom_status({"stage": "replies", "groups": len(validation.groups)})
    summary, dead_lettered = yield from send_and_record(context, started, validation, outcomes)
    shadow_scored, shadow_failed = 0, 0
    if validation.shadow_groups:
        context.set_custom_status({"stage": "shadow", "groups": len(validation.shadow_groups)})
        shadow_scored, shadow_failed = yield from run_shadows(context, validation.shadow_groups)
    yield from release(context, validation, outcomes)
    context.set_custom_status({"stage": "done"})
    return OrchestrationOutcome(
        instance_id=context.instance_id,
        messages=started.message_count,
        groups=len(validation.groups),
        replied=summary.sent + len(summary.http_replies),
        ok=summary.ok,
        errors=summary.errors,
        dead_lettered=dead_lettered,
        failed_groups=sum(outcome.failure is not None for outcome in outcomes),
        shadow_scored=shadow_scored,
        shadow_failed_groups=shadow_failed,
        http_replies=summary.http_replies,
    ).model_dump(mode="json")


@bp.orchestration_trigger(context_name="context", orchestration=names.ORCHESTRATOR)
def score_batch_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Score one batch: validate, infer per group, reply, record the rest (all with retries)."""
    return (yield from score_messages(context))
