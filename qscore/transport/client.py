"""The one place that builds an `azure.servicebus.aio.ServiceBusClient`.

Locally (and with the project's own AMQP endpoint) a connection string is used. In Azure the
worker gets only the namespace and authenticates with `DefaultAzureCredential`, which picks up
workload identity on AKS, so no secret is deployed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.servicebus.aio import ServiceBusClient


class TransportConfigError(ValueError):
    """Neither a connection string nor a namespace was given (or both were), or the connection
    string is malformed."""


def check_connection_string(connection: str) -> None:
    """Raise TransportConfigError (one line a person can act on) for a malformed connection string."""
    from azure.servicebus import parse_connection_string

    try:
        parse_connection_string(connection)
    except ValueError as exc:
        raise TransportConfigError(
            f"the Service Bus connection string is not valid: {exc} Expected "
            "'Endpoint=sb://HOST;SharedAccessKeyName=NAME;SharedAccessKey=KEY'"
        ) from None


def servicebus_client(
    *, connection: str | None = None, namespace: str | None = None, **client_options: Any
) -> ServiceBusClient:
    """A ServiceBusClient from a connection string, or from a namespace with DefaultAzureCredential.

    `namespace` may be short (`myns`) or fully qualified (`myns.servicebus.windows.net`).
    Extra keyword options (e.g. `retry_total`) go to the client unchanged.
    """
    from azure.servicebus.aio import ServiceBusClient

    if bool(connection) == bool(namespace):
        raise TransportConfigError(
            "set exactly one of QSCORE_SERVICEBUS_CONNECTION (connection string) "
            "or QSCORE_SERVICEBUS_NAMESPACE (Azure namespace, uses DefaultAzureCredential)"
        )
    if connection:
        check_connection_string(connection)
        return ServiceBusClient.from_connection_string(connection, **client_options)
    from azure.identity.aio import DefaultAzureCredential

    assert namespace is not None
    fully_qualified = namespace if "." in namespace else f"{namespace}.servicebus.windows.net"
    return ServiceBusClient(fully_qualified, DefaultAzureCredential(), **client_options)
