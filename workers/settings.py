"""Worker settings: one typed, keyword-only object, from `QSCORE_*` variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qscore.middleware.loading import VARIABLES as MIDDLEWARE_VARIABLES
from qscore.middleware.loading import check_reference, variable_in_use
from qscore.middleware.loading import references_in as middleware_references
from qscore.scoring import ReplyPolicy
from qscore.settings import (
    DEFAULT_REPLY_QUEUE,
    DEFAULT_REQUEST_QUEUE,
    DEFAULT_TRITON_URL,
    SettingsError,
    settings_from_env,
)

# Fields whose variable is not QSCORE_<FIELD>: the deployment's middleware is both runtimes'.
_VARIABLES = {"worker_middleware": MIDDLEWARE_VARIABLES}


def default_worker_id() -> str:
    """What replies name as `scored_by`: the pod/host name and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Everything a worker process needs; every field has a `QSCORE_<FIELD>` variable.

    Exactly one of `servicebus_connection` (connection string) and `servicebus_namespace`
    (Azure, DefaultAzureCredential/workload identity) must be set.
    """

    servicebus_connection: str | None = None
    servicebus_namespace: str | None = None
    request_queue: str = DEFAULT_REQUEST_QUEUE
    # Priority lanes (workers/lanes.py): comma-separated queues above `request_queue`, highest
    # first (e.g. scoring-requests-high). Each lane gets `lane_weight` times the receive turns
    # of the lane below it while both are busy.
    priority_queues: str | None = None
    lane_weight: int = 4
    # Used when a request names a reply session but no reply queue.
    reply_queue: str = DEFAULT_REPLY_QUEUE
    # Comma-separated queues a request may name as reply_to; unset: only `reply_queue`.
    allowed_reply_queues: str | None = None
    # The reply queues are session-enabled (the contract's are): a request without
    # reply_to_session_id is dead-lettered `no_reply_session` when it arrives.
    reply_sessions_required: bool = True
    # Also keep each answered rejection (error reply for a bad request) on the dead-letter
    # sub-queue with its code, instead of completing it (QSCORE_KEEP_ANSWERED_REJECTIONS).
    keep_answered_rejections: bool = False
    triton_url: str = DEFAULT_TRITON_URL
    triton_timeout_s: float = 30.0
    # Rows per Triton call: the model's max_batch_size capped by this (0 = no cap).
    max_batch_size: int = 0
    # An upper bound: with adaptive batching a batch waits only as long as the measured
    # arrival rate and service time say it pays (qscore.batching.adaptive).
    max_batch_delay_ms: float = 2.0
    adaptive_batching: bool = True
    # Most messages locked ahead of scoring (the SDK's prefetch buffer, which the worker cannot
    # renew); the worker sizes the actual window from measured throughput (workers/prefetch.py).
    # 0: no prefetch, one message per receive (job mode).
    prefetch: int = 512
    # Most messages received and not yet settled; the receive loop waits when it is reached.
    max_held_messages: int = 1024
    max_in_flight_batches: int = 4
    drain_grace_s: float = 30.0
    health_port: int | None = 8080  # None: no health server; 0: any free port
    health_host: str = "127.0.0.1"  # loopback: a pod's manifest sets 0.0.0.0 for its probes
    registry_path: Path | None = None
    interaction_log: Path | None = None
    max_message_bytes: int = 1_048_576
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    receive_wait_s: float = 1.0
    binary_replies: bool = False
    worker_id: str = field(default_factory=default_worker_id)
    # Job mode (KEDA ScaledJob): exit cleanly after settling this many messages ...
    exit_after_messages: int | None = None
    # ... or once nothing was received (and nothing held) for this long.
    exit_when_idle_s: float | None = None
    # Middleware of the deployment's own, loaded by name (qscore/middleware/loading.py), the
    # Functions app's too: QSCORE_MIDDLEWARE=package.module:factory[,another.module:factory]
    # (QSCORE_WORKER_MIDDLEWARE, deprecated, when QSCORE_MIDDLEWARE is unset)
    worker_middleware: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = ("max_held_messages", "max_in_flight_batches", "max_message_bytes", "lane_weight")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.exit_after_messages is not None and self.exit_after_messages < 1:
            raise ValueError("exit_after_messages must be >= 1 (or unset)")
        if self.exit_when_idle_s is not None and self.exit_when_idle_s <= 0:
            raise ValueError("exit_when_idle_s must be > 0 (or unset)")
        non_negative = (
            "prefetch",
            "max_batch_delay_ms",
            "drain_grace_s",
            "backoff_initial_s",
            "max_batch_size",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.receive_wait_s <= 0 or self.triton_timeout_s <= 0:
            raise ValueError("receive_wait_s and triton_timeout_s must be > 0")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        for reference in self.worker_middleware:
            check_reference(reference)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Settings from `QSCORE_*` variables; keyword `overrides` (CLI flags) win, None = not given."""
        for reference in middleware_references(environ):  # so the message names the variable set
            try:
                check_reference(reference, variable_in_use(environ))
            except ValueError as exc:
                raise SettingsError(f"invalid settings: {exc}") from None
        return settings_from_env(cls, environ, variables=_VARIABLES, overrides=overrides)

    def lanes(self) -> dict[str, int]:
        """The request queues to receive from, highest lane first, with their turn weights."""
        higher = [name.strip() for name in (self.priority_queues or "").split(",") if name.strip()]
        queues = [name for name in higher if name != self.request_queue] + [self.request_queue]
        return {queue: self.lane_weight ** (len(queues) - 1 - rank) for rank, queue in enumerate(queues)}

    def reply_queues_allowed(self) -> list[str]:
        """The reply allow-list: `allowed_reply_queues`, or only the configured reply queue."""
        names = [name.strip() for name in (self.allowed_reply_queues or "").split(",") if name.strip()]
        return names or [self.reply_queue]

    def reply_policy(self) -> ReplyPolicy:
        """Where replies may go, and whether answered rejections are kept (qscore.scoring)."""
        return ReplyPolicy.create(
            self.reply_queue,
            self.reply_queues_allowed(),
            sessions_required=self.reply_sessions_required,
            keep_answered_rejections=self.keep_answered_rejections,
        )

    def redacted(self) -> dict[str, Any]:
        """The settings for a log line, without the connection string's key."""
        shown = dataclasses.asdict(self)
        if self.servicebus_connection:
            shown["servicebus_connection"] = self.servicebus_connection.split(";")[0] + ";..."
        return shown
