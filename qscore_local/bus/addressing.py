"""Link addresses and terminus details as Service Bus clients send them."""

from __future__ import annotations

from proton import Link

from qscore_local.bus.entity import Entity
from qscore_local.bus.errors import ARGUMENT_ERROR, BrokerError
from qscore_local.bus.management import CBS_NODE, MANAGEMENT_NODE

SESSION_FILTER = "com.microsoft:session-filter"


def node_path(address: str | None) -> str:
    """`amqps://host:port/queue/$management` -> `queue/$management` (clients send full URIs)."""
    path = address or ""
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]
    return path.strip("/")


def is_request_node(address: str) -> bool:
    return address == CBS_NODE or address.endswith(MANAGEMENT_NODE)


def session_filter(link: Link) -> tuple[bool, str | None]:
    """(asked for a session, which one: None = next available) from the source filter map."""
    data = link.remote_source.filter
    data.rewind()
    if not data.next():
        return False, None
    filters = data.get_object()
    if not isinstance(filters, dict) or SESSION_FILTER not in {str(key) for key in filters}:
        return False, None
    value = next(value for key, value in filters.items() if str(key) == SESSION_FILTER)
    value = getattr(value, "value", value)  # a described filter carries the id as its value
    if value is not None and not isinstance(value, str):
        # Service Bus session ids are strings; the service refuses a filter of another type.
        raise BrokerError(ARGUMENT_ERROR, f"The session filter must be a string, not {type(value).__name__}.")
    return True, value


def entity_summary(entity: Entity) -> str:
    config = entity.config
    traits = [f"lock {config.lock_duration_s:g}s", f"max delivery {config.max_delivery_count}"]
    if config.requires_session:
        traits.append("sessions")
    if config.default_ttl_s is not None:
        traits.append(f"ttl {config.default_ttl_s:g}s")
    if config.dead_lettering_on_expiration:
        traits.append("dead-letter on expiry")
    return f"{entity.name} ({', '.join(traits)})"
