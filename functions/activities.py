"""Activity functions: the only place the orchestration touches Triton, the bus and storage.

Each takes and returns a JSON document (dicts; Durable records them in the history) and hands
the work to functions/steps.py (validation), functions/inference.py, functions/shadow.py and
functions/delivery.py. Only small documents cross the history: references into the payload
store, request ids, reasons and counts (docs/functions.md, "Data flow").
"""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df

from functions import delivery, inference, names, shadow, steps
from functions.payloads import Carried, DeadLetterInput, InferInput, ReleaseInput, SendInput
from functions.runtime import current_runtime

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload", activity=names.VALIDATE)
async def validate_batch(payload: dict[str, Any]) -> dict[str, Any]:
    """Decode and check every request once; store each (model, version) group's prepared requests."""
    result = await steps.validate(Carried.model_validate(payload["batch"]), current_runtime())
    return result.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.INFER)
async def infer_group(payload: dict[str, Any]) -> dict[str, Any]:
    """One Triton call for one (model, version) group; raises on transient failures to be retried."""
    request = InferInput.model_validate(payload)
    outcome = await inference.infer(request.group, current_runtime())
    return outcome.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.SHADOW_INFER)
async def shadow_infer_group(payload: dict[str, Any]) -> dict[str, Any]:
    """Score a group again with its shadow version; results go to the interaction log only."""
    request = InferInput.model_validate(payload)
    outcome = await shadow.shadow_infer(request.group, current_runtime())
    return outcome.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.SEND_REPLIES)
async def send_replies(payload: dict[str, Any]) -> dict[str, Any]:
    """Batched sends to the reply queues with each producer's session id."""
    request = SendInput.model_validate(payload)
    summary = await delivery.send_replies(request.outcomes, request.rejected_replies, current_runtime())
    return summary.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.DEAD_LETTER)
async def store_dead_letters(payload: dict[str, Any]) -> int:
    """Requests that cannot be answered go to the failures queue, with their reason and body
    (read from the batch, the only activity after validation that reads it)."""
    request = DeadLetterInput.model_validate(payload)
    runtime = current_runtime()
    messages = await steps.load_messages(request.batch, runtime.payloads) if request.batch is not None else []
    rejected = list(request.rejected)
    if request.replies_failed is not None:
        rejected += delivery.unanswered_after_failed_send(messages, rejected, request.replies_failed)
    return await delivery.record_failures(request.instance_id, messages, rejected, runtime)


@bp.activity_trigger(input_name="payload", activity=names.RELEASE)
async def release_documents(payload: dict[str, Any]) -> int:
    """Delete the documents the orchestration stored once nothing reads them any more."""
    request = ReleaseInput.model_validate(payload)
    store = current_runtime().payloads
    await asyncio.gather(*(store.delete(ref) for ref in request.documents))
    return len(request.documents)
