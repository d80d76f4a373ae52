"""One reading of a value the Service Bus SDK hands back as bytes or str (application property
keys and values, dead-letter reasons): the transport, the trace context and the dead-letter
tools all read them through `wire_text`."""

from __future__ import annotations

from typing import Any


def wire_text(value: Any) -> str:
    """`value` as text: bytes-like decoded as UTF-8 (bad bytes replaced), None as "", else str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)
