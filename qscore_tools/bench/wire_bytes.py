"""Bytes on the wire per sample: what a request message carries for its tensors, by body form.

On Azure the broker's bandwidth (about 4 MB/s per Premium messaging unit) bounds samples per
second at bytes per sample, so the body's overhead over the tensors' raw bytes is the figure.
The messages are built exactly as the producer library sends them (`OutgoingRequest.build`,
`request_message`), from the bench's digits rows; nothing here is a constant of the contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qscore.contracts import BINARY_REPLY_CONTENT_TYPE
from qscore.producer import OutgoingRequest, request_message
from qscore.producer.settings import BodyFormat
from qscore_tools.bench.workload import INPUT_NAME, load_pixels

WIRE_MODEL = "digits"
WIRE_ROWS = 128
# A request-id-sized session and queue name, as the library sends them (UUID hex).
_SESSION = "producer-" + "0" * 32


@dataclass(frozen=True)
class WireBytes:
    """One `rows`-row request in each form: bytes of body (and of body plus application
    properties, which the broker also carries) per byte of raw tensor."""

    model: str
    rows: int
    raw_bytes: int
    body_bytes: dict[str, int]
    message_bytes: dict[str, int]

    def ratio(self, form: str) -> float:
        return self.body_bytes[form] / self.raw_bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratios": {form: self.ratio(form) for form in self.body_bytes}}


def _properties_bytes(properties: dict[Any, Any] | None) -> int:
    return sum(len(str(key)) + len(str(value)) for key, value in (properties or {}).items())


def wire_bytes(rows: int = WIRE_ROWS, pixels: np.ndarray | None = None) -> WireBytes:
    """Body (and message) bytes of a `rows`-row digits request in the binary form, JSON with
    `b64` tensors and JSON with `data` lists, against the rows' raw bytes."""
    source = load_pixels() if pixels is None else pixels
    batch = np.ascontiguousarray(np.resize(source, (rows, source.shape[1])), dtype=np.float32)
    forms: dict[str, tuple[BodyFormat, bool]] = {
        "binary": ("binary", False),
        "json_b64": ("json", True),
        "json_data": ("json", False),
    }
    body_bytes: dict[str, int] = {}
    message_bytes: dict[str, int] = {}
    for name, (body_format, b64) in forms.items():
        outgoing = OutgoingRequest.build(WIRE_MODEL, {INPUT_NAME: batch}, binary=b64, body_format=body_format)
        message = request_message(
            outgoing,
            reply_to="scoring-replies",
            reply_to_session_id=_SESSION,
            accept=BINARY_REPLY_CONTENT_TYPE,
        )
        body_bytes[name] = len(outgoing.body())
        message_bytes[name] = body_bytes[name] + _properties_bytes(message.application_properties)
    return WireBytes(WIRE_MODEL, rows, batch.nbytes, body_bytes, message_bytes)
