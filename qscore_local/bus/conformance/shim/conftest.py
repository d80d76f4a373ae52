"""pytest setup for the SDK's tests against the local endpoint (replaces the SDK's conftest.py).

The tests build clients from a namespace and a credential, as against Azure, where TLS on 5671
(443 for WebSockets) is implied. The local endpoint speaks plain AMQP and AMQP over WebSockets
on one loopback port, so every client gets `use_tls=False` and, for WebSockets, the endpoint's
address as `custom_endpoint_address` (the SDK's own knob for a non-default WebSocket address).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, TransportType
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from servicebus_preparer import HOST, PORT


def _pointed_at_local_endpoint(init: Any) -> Any:
    @functools.wraps(init)
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("use_tls", False)
        transport = kwargs.get("transport_type")
        if (
            transport is not None
            and getattr(transport, "value", None) == TransportType.AmqpOverWebsocket.value
        ):
            kwargs.setdefault("custom_endpoint_address", f"sb://{HOST}:{PORT}")
        init(self, *args, **kwargs)

    return patched


ServiceBusClient.__init__ = _pointed_at_local_endpoint(ServiceBusClient.__init__)  # type: ignore[method-assign]
AsyncServiceBusClient.__init__ = _pointed_at_local_endpoint(AsyncServiceBusClient.__init__)  # type: ignore[method-assign]


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "liveTest: mark test to be a live test only")
    config.addinivalue_line("markers", "live_test_only: mark test to be a live test only")
    config.addinivalue_line("markers", "playback_test_only: mark test to be a playback test only")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Tests that wait minutes on the service's clock by design get the timeout the runner names
    for them (qscore_local/bus/conformance/long_tests.txt) where --timeout is shorter."""
    timeouts: dict[str, int] = json.loads(os.environ.get("QSCORE_CONFORMANCE_TIMEOUTS", "{}"))
    default = int(config.getoption("timeout", None) or 0)
    for item in items:
        for prefix, seconds in timeouts.items():
            if item.nodeid.startswith(prefix) and seconds > default:
                item.add_marker(pytest.mark.timeout(seconds))
