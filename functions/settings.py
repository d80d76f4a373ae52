"""Settings of the Functions app, read from app settings (environment variables).

The names shared with the worker (`QSCORE_*`, see the interfaces) keep their meaning; the
`QSCORE_FUNCTIONS_*` ones only concern the Functions runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qscore.scoring.envelope import ReplyPolicy
from qscore.transport.failures import DEFAULT_FAILURES_QUEUE

# The Durable Task Azure Storage provider moves any message over 45 KB to blob storage (compressed
# "large message" path): every replay then re-reads a blob. Keeping inputs below it keeps replays cheap.
DEFAULT_INLINE_LIMIT_BYTES = 45 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Retry of every I/O activity (validation, inference, reply sends, failure records)."""

    first_retry_ms: int = 1000
    backoff_coefficient: float = 2.0
    max_retry_ms: int = 10_000
    max_attempts: int = 4


@dataclass(frozen=True)
class FunctionsSettings:
    connection: str | None
    namespace: str | None
    request_queue: str
    reply_queue: str
    triton_url: str
    inline_limit_bytes: int
    payload_dir: Path
    failures_queue: str
    retry: RetryPolicy
    scored_by: str
    # As the worker's: comma-separated queues a request may reply to (unset: only reply_queue),
    # and whether those queues need a reply session.
    allowed_reply_queues: str | None = None
    reply_sessions_required: bool = True

    def reply_policy(self) -> ReplyPolicy:
        allowed = (self.allowed_reply_queues or "").split(",")
        return ReplyPolicy.create(self.reply_queue, allowed, sessions_required=self.reply_sessions_required)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FunctionsSettings:
        values = os.environ if env is None else env
        retry = RetryPolicy(
            first_retry_ms=int(values.get("QSCORE_FUNCTIONS_RETRY_FIRST_MS", "1000")),
            backoff_coefficient=float(values.get("QSCORE_FUNCTIONS_RETRY_BACKOFF", "2.0")),
            max_retry_ms=int(values.get("QSCORE_FUNCTIONS_RETRY_MAX_MS", "10000")),
            max_attempts=int(values.get("QSCORE_FUNCTIONS_RETRY_ATTEMPTS", "4")),
        )
        return cls(
            connection=values.get("QSCORE_SERVICEBUS_CONNECTION") or values.get("ServiceBusConnection"),
            namespace=values.get("QSCORE_SERVICEBUS_NAMESPACE")
            or values.get("ServiceBusConnection__fullyQualifiedNamespace"),
            request_queue=values.get("QSCORE_REQUEST_QUEUE", "scoring-requests"),
            reply_queue=values.get("QSCORE_REPLY_QUEUE", "scoring-replies"),
            triton_url=values.get("QSCORE_TRITON_URL", "127.0.0.1:8001"),
            inline_limit_bytes=int(
                values.get("QSCORE_FUNCTIONS_INLINE_LIMIT_BYTES", str(DEFAULT_INLINE_LIMIT_BYTES))
            ),
            payload_dir=Path(values.get("QSCORE_FUNCTIONS_PAYLOAD_DIR", ".qscore/functions/payloads")),
            failures_queue=values.get("QSCORE_FAILURES_QUEUE", DEFAULT_FAILURES_QUEUE),
            retry=retry,
            scored_by=values.get("WEBSITE_INSTANCE_ID", "") or f"functions-{os.getpid()}",
            allowed_reply_queues=values.get("QSCORE_ALLOWED_REPLY_QUEUES") or None,
            reply_sessions_required=values.get("QSCORE_REPLY_SESSIONS_REQUIRED", "true").lower()
            not in {"0", "false", "no"},
        )
