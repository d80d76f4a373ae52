"""The event loop's records (qscore_local/bus/loop.py): each accepted socket, before and after it
said it speaks AMQP, and the map from proton's event numbers to the server's handlers."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from cproton import PN_TRANSPORT_CLOSED
from proton import Connection, Event, EventType, Transport

from qscore_local.bus.delivery_ids import DeliveryIdRenumberer
from qscore_local.bus.latency import DelayedConnection
from qscore_local.bus.server import BusServer


def handlers_by_event_number(server: BusServer) -> dict[int, Callable[[Event], None]]:
    """proton event number -> the server's `on_<event>` method, for the events the server handles."""
    handlers: dict[int, Callable[[Event], None]] = {}
    for number, event_type in EventType.TYPES.items():
        method = getattr(server, event_type.method, None)
        if method is not None:
            handlers[number] = method
    handlers.setdefault(PN_TRANSPORT_CLOSED, lambda event: None)  # the loop drops the socket
    return handlers


@dataclass(eq=False)
class Client:
    """One accepted socket and the proton transport/connection that speak AMQP on it."""

    sock: socket.socket
    transport: Transport
    connection: Connection
    registered_mask: int = selectors.EVENT_READ
    closed: bool = False
    inbound: DeliveryIdRenumberer = field(default_factory=DeliveryIdRenumberer)
    delay: DelayedConnection | None = None  # None: no latency emulated, bytes go straight through


@dataclass(eq=False)
class Unidentified:
    """An accepted socket whose first bytes have not said yet whether it speaks AMQP."""

    sock: socket.socket
    address: object
