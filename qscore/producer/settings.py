"""Producer settings: one typed, keyword-only object, from arguments or `QSCORE_*` variables."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from qscore.settings import DEFAULT_REPLY_QUEUE, DEFAULT_REQUEST_QUEUE, SHARED_VARIABLES, settings_from_env

DEFAULT_HIGH_PRIORITY_QUEUE = f"{DEFAULT_REQUEST_QUEUE}-high"

ReplyReceiveMode = Literal["peek_lock", "receive_and_delete"]
# A body's form (docs/contract.md): a JSON header and the tensors' raw bytes, or JSON.
BodyFormat = Literal["binary", "json"]


def new_session_id() -> str:
    """A reply session id of our own: only this producer reads replies addressed to it."""
    return f"producer-{uuid.uuid4().hex}"


@dataclass(frozen=True, kw_only=True)
class ProducerSettings:
    """Where requests go, where replies come back, and how long to wait for them.

    `connection` (a connection string) or `namespace` (fully qualified, with Azure AD
    credentials) selects the Service Bus; exactly one is needed unless a client is passed
    to the producer directly.
    """

    connection: str | None = None
    namespace: str | None = None
    request_queue: str = DEFAULT_REQUEST_QUEUE
    reply_queue: str = DEFAULT_REPLY_QUEUE
    session_id: str = field(default_factory=new_session_id)
    reply_timeout_s: float = 60.0
    # Replies are ours alone and useless once we stop, so deleting on receipt saves a
    # settlement round trip per reply; peek_lock is there for brokers without it.
    reply_receive_mode: ReplyReceiveMode = "receive_and_delete"
    receive_batch_size: int = 256
    # A receive call returns only when its wait ends or it is full, and the SDK's AMQP reader
    # blocks up to its socket timeout (0.2 s by default) after the last frame of a burst: with
    # the SDK defaults a burst of replies sits ~0.25 s in the buffer. 0.05/0.02 cut that to
    # ~0.05 s for ~2% of a core while idle (measured on the local bus). The reply receiver only
    # writes small frames (flow, settlement), so the short socket timeout is safe.
    receive_wait_s: float = 0.05
    reply_socket_timeout_s: float = 0.02
    # A receive returns this long after its first reply arrived (the SDK's default is 0.2 s,
    # see qscore.transport.receiving); replies already buffered are taken at once.
    reply_further_pull_s: float = 0.0
    prefetch: int = 512
    # Outstanding batch sends at once: overlaps the per-send round trip on large runs.
    max_concurrent_sends: int = 4
    binary_tensors: bool = False
    # The request body's form: binary (a JSON header and the raw tensor bytes, about 1.0x the
    # tensors' size) or json (docs/contract.md); and the reply form asked for (`accept`).
    body_format: BodyFormat = "binary"
    reply_format: BodyFormat = "binary"
    # Coalescing (qscore.producer.coalesce): concurrent score() calls for one model/version/lane
    # within the linger go out as one request-batch message. 2 ms is small next to a broker
    # round trip (~10 ms locally) and a lone call pays no more than it; the bounds keep a
    # message well under Service Bus Standard's 256 KiB.
    coalesce: bool = True
    coalesce_linger_ms: float = 2.0
    coalesce_max_rows: int = 256
    coalesce_max_bytes: int = 192 * 1024
    # Priority lanes: a request with priority >= high_priority_from goes to the high lane's queue.
    high_priority_queue: str = DEFAULT_HIGH_PRIORITY_QUEUE
    high_priority_from: int = 5

    def __post_init__(self) -> None:
        if self.reply_timeout_s <= 0:
            raise ValueError("reply_timeout_s must be > 0")
        if self.receive_batch_size < 1 or self.max_concurrent_sends < 1:
            raise ValueError("receive_batch_size and max_concurrent_sends must be >= 1")
        if not self.session_id:
            raise ValueError("session_id must not be empty")
        if self.body_format not in ("binary", "json") or self.reply_format not in ("binary", "json"):
            raise ValueError("body_format and reply_format are 'binary' or 'json'")
        if self.coalesce_linger_ms < 0 or self.coalesce_max_rows < 1 or self.coalesce_max_bytes < 1:
            raise ValueError("coalesce_linger_ms must be >= 0, coalesce_max_rows and _max_bytes >= 1")

    def lane(self, priority: int) -> str:
        """The request queue of a priority: the high lane from `high_priority_from` up."""
        return self.high_priority_queue if priority >= self.high_priority_from else self.request_queue

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ProducerSettings:
        """Settings from variables; keyword `overrides` win (None values are ignored).

        The bus and queue names are the shared `QSCORE_*` variables; the producer's own knobs
        are `QSCORE_PRODUCER_<FIELD>` so that they never collide with a worker's.
        """
        variables = {
            "connection": SHARED_VARIABLES["servicebus_connection"],
            "namespace": SHARED_VARIABLES["servicebus_namespace"],
        }
        return settings_from_env(
            cls, environ, prefix="QSCORE_PRODUCER_", variables=variables, overrides=overrides
        )
