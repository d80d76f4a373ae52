"""Per-queue counts from a running endpoint, through its `$management` node.

Used by `qscore bus stats`, the demo, the benchmarks and the autoscaling work. The request is a
plain AMQP request/response (`qscore:get-queue-counts`) sent with proton's blocking client on a
worker thread, so callers on an event loop never block it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from qscore_local.bus.management import MANAGEMENT_NODE, QUEUE_COUNTS_OPERATION

DEFAULT_AMQP_PORT = 5672


class BusStatsError(RuntimeError):
    """The endpoint could not be reached or refused the counts request."""


@dataclass(frozen=True)
class QueueCounts:
    """Messages in one queue by state; `total` includes the dead-letter sub-queue."""

    active: int
    locked: int
    dead_letter: int
    scheduled: int
    total: int


def parse_endpoint(connection_string: str) -> tuple[str, int]:
    """(host, port) from `Endpoint=sb://host:port;...`."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    endpoint = fields.get("Endpoint", "")
    if "://" not in endpoint:
        raise BusStatsError("connection string has no Endpoint=sb://host:port")
    address = endpoint.split("://", 1)[1].strip("/")
    host, _, port = address.partition(":")
    try:
        return host, int(port) if port else DEFAULT_AMQP_PORT
    except ValueError:
        raise BusStatsError(f"connection string endpoint has a bad port: {endpoint}") from None


def _request_counts(connection_string: str, timeout: float) -> dict[str, Any]:
    from proton import Message
    from proton.utils import BlockingConnection

    host, port = parse_endpoint(connection_string)
    try:
        connection = BlockingConnection(f"amqp://{host}:{port}", timeout=timeout, allowed_mechs="ANONYMOUS")
    except Exception as exc:
        raise BusStatsError(f"cannot reach the bus at {host}:{port}: {exc}") from None
    try:
        receiver = connection.create_receiver(MANAGEMENT_NODE, credit=10)
        sender = connection.create_sender(MANAGEMENT_NODE)
        request_id = str(uuid.uuid4())
        sender.send(
            Message(
                id=request_id,
                reply_to=MANAGEMENT_NODE,
                properties={"operation": QUEUE_COUNTS_OPERATION},
                body={},
            )
        )
        while True:
            response = receiver.receive(timeout=timeout)
            if response.correlation_id == request_id:
                break
        properties: dict[Any, Any] = dict(response.properties or {})
        if properties.get("statusCode") != 200:
            raise BusStatsError(f"counts request failed: {properties.get('statusDescription')}")
        body: Any = response.body or {}
        return dict(body.get("queues") or {})
    except BusStatsError:
        raise
    except Exception as exc:
        raise BusStatsError(f"counts request to {host}:{port} failed: {exc}") from None
    finally:
        connection.close()


def queue_counts_blocking(connection_string: str, *, timeout: float = 10) -> dict[str, QueueCounts]:
    """Counts per queue name (blocking; use `queue_counts` on an event loop)."""
    raw = _request_counts(connection_string, timeout)
    return {
        str(name): QueueCounts(
            active=int(row["active"]),
            locked=int(row["locked"]),
            dead_letter=int(row["dead-letter"]),
            scheduled=int(row["scheduled"]),
            total=int(row["total"]),
        )
        for name, row in raw.items()
    }


async def queue_counts(connection_string: str, *, timeout_s: float = 10) -> dict[str, QueueCounts]:
    """Counts per queue name from the endpoint the connection string points at."""
    return await asyncio.to_thread(queue_counts_blocking, connection_string, timeout=timeout_s)
