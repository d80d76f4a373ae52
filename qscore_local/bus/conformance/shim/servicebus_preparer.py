"""Stand-in for the SDK tests' ARM preparers: each queue preparer creates a fresh queue with the
asked-for properties on the local endpoint, through the public ServiceBusAdministrationClient.

The namespace "preparer" hands the tests the endpoint's address: tests build
`f"{servicebus_namespace.name}{SERVICEBUS_ENDPOINT_SUFFIX}"`, so the name is the host and the
suffix is `:port`. Copied next to the downloaded tests at run time; never imported by qscore.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import pytest

HOST = os.environ.get("QSCORE_CONFORMANCE_HOST", "127.0.0.1")
PORT = int(os.environ.get("QSCORE_CONFORMANCE_PORT", "5672"))
CONNECTION_STRING = (
    f"Endpoint=sb://{HOST}:{PORT};SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=local;UseDevelopmentEmulator=true"
)
SERVICEBUS_ENDPOINT_SUFFIX = f":{PORT}"
_counter = itertools.count(1)


@dataclass
class FakeResource:
    name: str
    id: str


def _wrap(fn: Any, resources: Any) -> Any:
    """Call `fn` with the resources' keyword arguments added, keeping sync/async and pytest marks."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **{**kwargs, **resources()})

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **{**kwargs, **resources()})

    return run


class _Preparer:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options = kwargs

    def resources(self) -> dict[str, Any]:
        return {}

    def __call__(self, fn: Any) -> Any:
        return _wrap(fn, self.resources)


class ServiceBusResourceGroupPreparer(_Preparer):
    def resources(self) -> dict[str, Any]:
        return {"resource_group": FakeResource("local", "local")}


class ServiceBusNamespacePreparer(_Preparer):
    def resources(self) -> dict[str, Any]:
        return {
            "servicebus_namespace": FakeResource(HOST, HOST),
            "servicebus_namespace_connection_string": CONNECTION_STRING,
            "servicebus_namespace_key_name": "RootManageSharedAccessKey",
            "servicebus_namespace_primary_key": "local",
        }


def _admin() -> Any:
    from azure.servicebus.management import ServiceBusAdministrationClient

    # The local endpoint's administration port answers TLS with a self-signed certificate.
    return ServiceBusAdministrationClient.from_connection_string(CONNECTION_STRING, connection_verify=False)


class ServiceBusQueuePreparer(_Preparer):
    """A new queue per test call (parametrized calls each get their own), as ARM would create."""

    def resources(self) -> dict[str, Any]:
        prefix = str(self.options.get("name_prefix") or "sbqueue")[:20]
        name = f"{prefix}{next(_counter)}{uuid.uuid4().hex[:6]}".lower()
        properties: dict[str, Any] = {
            "lock_duration": self.options.get("lock_duration", "PT30S"),
            "requires_session": bool(self.options.get("requires_session", False)),
            "requires_duplicate_detection": bool(self.options.get("requires_duplicate_detection", False)),
            "dead_lettering_on_message_expiration": bool(
                self.options.get("dead_lettering_on_message_expiration", False)
            ),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning for the local certificate
            with _admin() as admin:
                admin.create_queue(name, **properties)
        parameter = self.options.get("parameter_name", "servicebus_queue")
        return {parameter: FakeResource(name, name)}


class _OutOfScopePreparer(_Preparer):
    def resources(self) -> dict[str, Any]:
        pytest.skip("topics and subscriptions are out of the local endpoint's scope")


ServiceBusTopicPreparer = _OutOfScopePreparer
ServiceBusSubscriptionPreparer = _OutOfScopePreparer
ServiceBusNamespaceAuthorizationRulePreparer = _OutOfScopePreparer
ServiceBusQueueAuthorizationRulePreparer = _OutOfScopePreparer

CachedServiceBusResourceGroupPreparer = ServiceBusResourceGroupPreparer
CachedServiceBusNamespacePreparer = ServiceBusNamespacePreparer
CachedServiceBusQueuePreparer = ServiceBusQueuePreparer
CachedServiceBusTopicPreparer = ServiceBusTopicPreparer
CachedServiceBusSubscriptionPreparer = ServiceBusSubscriptionPreparer
