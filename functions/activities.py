"""Activity functions: the only place the orchestration touches Triton, the bus and storage.

Each takes and returns a JSON document (dicts; Durable records them in the history) and hands
the work to functions/steps.py and functions/delivery.py.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from functions import delivery, names, shadow, steps
from functions.payloads import DeadLetterInput, InferInput, SendInput
from functions.runtime import current_runtime

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload", activity=names.VALIDATE)
async def validate_batch(payload: dict[str, Any]) -> dict[str, Any]:
    """Decode and check every request; group the valid ones by model and version."""
    from functions.payloads import Carried

    result = await steps.validate(Carried.model_validate(payload["batch"]), current_runtime())
    return result.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.INFER)
async def infer_group(payload: dict[str, Any]) -> dict[str, Any]:
    """One Triton call for one (model, version) group; raises on transient failures to be retried."""
    request = InferInput.model_validate(payload)
    outcome = await steps.infer(request.batch, request.group, current_runtime())
    return outcome.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.SHADOW_INFER)
async def shadow_infer_group(payload: dict[str, Any]) -> dict[str, Any]:
    """Score a group again with its shadow version; results go to the interaction log only."""
    request = InferInput.model_validate(payload)
    outcome = await shadow.shadow_infer(request.batch, request.group, current_runtime())
    return outcome.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.SEND_REPLIES)
async def send_replies(payload: dict[str, Any]) -> dict[str, Any]:
    """Batched sends to the reply queues with each producer's session id."""
    request = SendInput.model_validate(payload)
    runtime = current_runtime()
    batch = await steps.load_batch(request.batch, runtime.payloads)
    summary = await delivery.send_replies(batch, request.outcomes, request.rejected, runtime)
    return summary.model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity=names.DEAD_LETTER)
async def store_dead_letters(payload: dict[str, Any]) -> int:
    """Requests that cannot be answered go to the failures queue, with their reason."""
    request = DeadLetterInput.model_validate(payload)
    runtime = current_runtime()
    batch = await steps.load_batch(request.batch, runtime.payloads) if request.batch is not None else []
    rejected = list(request.rejected)
    if request.replies_failed is not None:
        rejected += delivery.unanswered_after_failed_send(batch, rejected, request.replies_failed)
    return await delivery.record_failures(request.instance_id, batch, rejected, runtime)
