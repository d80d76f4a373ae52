"""Settings of the Functions app, read from app settings (environment variables).

The names shared with the worker (`QSCORE_*`, see the interfaces) keep their meaning; the
`QSCORE_FUNCTIONS_*` ones only concern the Functions runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qscore.scoring.envelope import ReplyPolicy
from qscore.settings import (
    DEFAULT_REPLY_QUEUE,
    DEFAULT_REQUEST_QUEUE,
    DEFAULT_TRITON_URL,
    SHARED_VARIABLES,
    settings_from_env,
)
from qscore.transport.failures import DEFAULT_FAILURES_QUEUE

# The Durable Task Azure Storage provider moves any message over 45 KB to blob storage (compressed
# "large message" path): every replay then re-reads a blob. Keeping inputs below it keeps replays cheap.
DEFAULT_INLINE_LIMIT_BYTES = 45 * 1024


def _default_scored_by() -> str:
    return f"functions-{os.getpid()}"


# Fields whose app setting is not QSCORE_FUNCTIONS_<FIELD>: the names shared with the worker,
# and the Functions host's own (its Service Bus connection, its instance id).
_VARIABLES: dict[str, str | tuple[str, ...]] = {
    "connection": (SHARED_VARIABLES["servicebus_connection"], "ServiceBusConnection"),
    "namespace": (
        SHARED_VARIABLES["servicebus_namespace"],
        "ServiceBusConnection__fullyQualifiedNamespace",
    ),
    "failures_queue": "QSCORE_FAILURES_QUEUE",
    "scored_by": "WEBSITE_INSTANCE_ID",
    "allowed_reply_queues": "QSCORE_ALLOWED_REPLY_QUEUES",
    "reply_sessions_required": "QSCORE_REPLY_SESSIONS_REQUIRED",
    "keep_answered_rejections": "QSCORE_KEEP_ANSWERED_REJECTIONS",
}
_RETRY_VARIABLES = {
    "first_retry_ms": "QSCORE_FUNCTIONS_RETRY_FIRST_MS",
    "backoff_coefficient": "QSCORE_FUNCTIONS_RETRY_BACKOFF",
    "max_retry_ms": "QSCORE_FUNCTIONS_RETRY_MAX_MS",
    "max_attempts": "QSCORE_FUNCTIONS_RETRY_ATTEMPTS",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Retry of every I/O activity (validation, inference, reply sends, failure records)."""

    first_retry_ms: int = 1000
    backoff_coefficient: float = 2.0
    max_retry_ms: int = 10_000
    max_attempts: int = 4


@dataclass(frozen=True, kw_only=True)
class FunctionsSettings:
    connection: str | None = None
    namespace: str | None = None
    request_queue: str = DEFAULT_REQUEST_QUEUE
    reply_queue: str = DEFAULT_REPLY_QUEUE
    triton_url: str = DEFAULT_TRITON_URL
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    payload_dir: Path = Path(".qscore/functions/payloads")
    failures_queue: str = DEFAULT_FAILURES_QUEUE
    retry: RetryPolicy = RetryPolicy()
    scored_by: str = field(default_factory=_default_scored_by)
    # As the worker's: comma-separated queues a request may reply to (unset: only reply_queue),
    # and whether those queues need a reply session.
    allowed_reply_queues: str | None = None
    reply_sessions_required: bool = True
    # As the worker's: an answered rejection is also recorded on the failures queue.
    keep_answered_rejections: bool = False

    def reply_policy(self) -> ReplyPolicy:
        allowed = (self.allowed_reply_queues or "").split(",")
        return ReplyPolicy.create(
            self.reply_queue,
            allowed,
            sessions_required=self.reply_sessions_required,
            keep_answered_rejections=self.keep_answered_rejections,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FunctionsSettings:
        """From app settings: the shared `QSCORE_*` names, `QSCORE_FUNCTIONS_*`, the host's own."""
        retry = settings_from_env(RetryPolicy, env, variables=_RETRY_VARIABLES)
        return settings_from_env(
            cls, env, prefix="QSCORE_FUNCTIONS_", variables=_VARIABLES, overrides={"retry": retry}
        )
