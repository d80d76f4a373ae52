"""Function names and the deterministic orchestration instance id.

The names are what `function.json` (and the Durable history) records; orchestrator code refers to
activities by these strings so that a rename shows up in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

TRIGGER = "score_requests_trigger"
ORCHESTRATOR = "score_batch_orchestrator"
VALIDATE = "validate_batch"
INFER = "infer_group"
SHADOW_INFER = "shadow_infer_group"
SEND_REPLIES = "send_replies"
DEAD_LETTER = "store_dead_letters"
RELEASE = "release_documents"
HTTP_SUBMIT = "http_submit_score"
HTTP_STATUS = "http_score_status"

INSTANCE_PREFIX = "qscore-"


def messages_instance_id(message_ids: Iterable[str]) -> str:
    """One instance id per set of message ids, whatever order they arrived in.

    The same messages redelivered map to the same instance, so the trigger can see
    that it is already running or done and not score it twice.
    """
    joined = "\n".join(sorted(message_ids))
    return INSTANCE_PREFIX + hashlib.sha256(joined.encode()).hexdigest()[:32]


def http_instance_id(submitter: str, request_id: str) -> str:
    """An HTTP request's instance, keyed by its submitter too: a caller's request id never
    reaches another caller's request (nor collides with it), and never a queue batch's."""
    return messages_instance_id([f"http\n{submitter}\n{request_id}"])
