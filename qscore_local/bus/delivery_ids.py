"""Accept a client's transfers whatever delivery-ids it numbered them with, as Service Bus does.

The SDK's synchronous client is not thread-safe, yet its own usage (and its own live tests:
`AutoLockRenewer(max_workers=8)` renewing on one receiver, ten threads peeking on one receiver)
sends management requests from several threads over one session. Two threads then read the
session's `next_outgoing_id` before either increments it: the wire carries delivery-ids such as
2, 2, 4. Service Bus (Microsoft.Azure.Amqp's `IncomingSessionChannel.OnReceiveTransfer`) only
counts incoming transfers and never compares the delivery-id with an expected one, so those
requests succeed there. proton's engine refuses them and closes the whole connection with
`amqp:session:invalid-field` ("sequencing error"), taking every link of the client with it.

`DeliveryIdRenumberer` sits between the socket and proton's transport: it splits the inbound
byte stream into frames and, for the first frame of each new delivery on a session, rewrites a
delivery-id that is not the next one proton expects into that one. In-order traffic (everything
a well-behaved client sends) passes through untouched. The endpoint's dispositions then carry
its own numbering for the renumbered deliveries; the management requests these races affect
are answered by correlation-id, not by disposition, so the clients concerned do not notice.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger("qscore_local.bus")

PROTOCOL_HEADER_PREFIX = b"AMQP"  # a frame's 4-byte size can never spell this (> any max frame)
# proton refuses frames over its max frame size (32 KiB here); a larger announced size is not
# held back waiting for bytes that may never come: the stream goes to proton as is from there on.
MAX_HELD_FRAME = 1 << 20
AMQP_FRAME = 0x00
BEGIN, TRANSFER, END = 0x11, 0x14, 0x17
_NULL, _TRUE, _FALSE, _UINT0, _ULONG0 = 0x40, 0x41, 0x42, 0x43, 0x44
_SMALLUINT, _SMALLULONG, _BOOLEAN, _UINT, _ULONG = 0x52, 0x53, 0x56, 0x70, 0x80
_VBIN8, _VBIN32, _LIST8, _LIST32 = 0xA0, 0xB0, 0xC0, 0xD0
_FIXED = {_NULL: 0, _TRUE: 0, _FALSE: 0, _UINT0: 0, _ULONG0: 0, _SMALLUINT: 1, _SMALLULONG: 1}
_FIXED |= {_BOOLEAN: 1, _UINT: 4, _ULONG: 8}


class _Unparsed(ValueError):
    """A field encoded in a way this reader does not follow: the frame passes through as is."""


def _field_end(body: bytes, at: int) -> int:
    """Offset just past the primitive value encoded at `at`."""
    code = body[at]
    if code in _FIXED:
        return at + 1 + _FIXED[code]
    if code == _VBIN8:
        return at + 2 + body[at + 1]
    if code == _VBIN32:
        return at + 5 + struct.unpack_from(">I", body, at + 1)[0]
    raise _Unparsed(hex(code))


def _uint_value(body: bytes, at: int) -> int | None:
    code = body[at]
    if code == _NULL:
        return None
    if code == _UINT0:
        return 0
    if code == _SMALLUINT:
        return body[at + 1]
    if code == _UINT:
        return int(struct.unpack_from(">I", body, at + 1)[0])
    raise _Unparsed(hex(code))


def _is_true(body: bytes, at: int) -> bool:
    return body[at] == _TRUE or (body[at] == _BOOLEAN and body[at + 1] != 0)


class _Transfer:
    """The fields of one transfer performative this module reads, with their byte offsets."""

    def __init__(self, body: bytes) -> None:
        if body[0] == _LIST8:
            self.count, self.fields_at = body[2], 3
        elif body[0] == _LIST32:
            self.count, self.fields_at = struct.unpack_from(">I", body, 5)[0], 9
        else:
            raise _Unparsed(hex(body[0]))
        offsets = [self.fields_at]
        for _ in range(min(self.count, 6)):  # handle, delivery-id, tag, format, settled, more
            offsets.append(_field_end(body, offsets[-1]))
        self.offsets = offsets
        self.handle = _uint_value(body, offsets[0])
        self.delivery_id = _uint_value(body, offsets[1]) if self.count > 1 else None
        self.more = self.count > 5 and _is_true(body, offsets[5])


def _with_delivery_id(body: bytes, transfer: _Transfer, delivery_id: int) -> bytes:
    """The performative (list) re-encoded with `delivery_id` in place of the one it carried."""
    start, end = transfer.offsets[1], transfer.offsets[2]
    fields = body[transfer.fields_at : start] + struct.pack(">BI", _UINT, delivery_id)
    fields += body[end : _list_end(body)]
    if len(fields) + 1 <= 0xFF:
        return struct.pack(">BBB", _LIST8, len(fields) + 1, transfer.count) + fields
    return struct.pack(">BII", _LIST32, len(fields) + 4, transfer.count) + fields


def _list_end(body: bytes) -> int:
    if body[0] == _LIST8:
        return 2 + body[1]
    return 5 + int(struct.unpack_from(">I", body, 1)[0])


class _SessionIds:
    """proton's view of one session's incoming deliveries: the next id it expects, open deliveries."""

    def __init__(self) -> None:
        self.next_id: int | None = None  # proton takes the first transfer's id as the start
        self.unfinished: dict[int, int] = {}  # handle -> id of its delivery still sending (more=true)


class DeliveryIdRenumberer:
    """Inbound bytes of one AMQP connection in, the same bytes out with delivery-ids proton accepts."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._sessions: dict[int, _SessionIds] = {}
        self._passthrough = False
        self.renumbered = 0

    def feed(self, data: bytes) -> bytes:
        """Whole frames (and protocol headers) from what has arrived; a partial frame waits."""
        if self._passthrough:
            return data
        pending = self._pending
        pending += data
        out = bytearray()
        at = 0
        while len(pending) - at >= 8:
            if pending[at : at + 4] == PROTOCOL_HEADER_PREFIX:
                out += pending[at : at + 8]
                at += 8
                continue
            size = struct.unpack_from(">I", pending, at)[0]
            if size < 8 or size > MAX_HELD_FRAME:  # not framing proton accepts: let it refuse it
                self._passthrough = True
                out += pending[at:]
                at = len(pending)
                break
            if len(pending) - at < size:
                break
            out += self._frame(bytes(pending[at : at + size]))
            at += size
        del pending[:at]
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        doff, kind, channel = frame[4] * 4, frame[5], struct.unpack_from(">H", frame, 6)[0]
        if kind != AMQP_FRAME or len(frame) < doff + 4 or frame[doff : doff + 2] != b"\x00\x53":
            return frame
        performative = frame[doff + 2]
        if performative in (BEGIN, END):
            self._sessions.pop(channel, None)
            return frame
        if performative != TRANSFER:
            return frame
        try:
            return self._transfer(frame, doff, channel)
        except (_Unparsed, IndexError, struct.error):
            return frame

    def _transfer(self, frame: bytes, doff: int, channel: int) -> bytes:
        body_at = doff + 3
        transfer = _Transfer(frame[body_at:])
        session = self._sessions.setdefault(channel, _SessionIds())
        handle, given = transfer.handle, transfer.delivery_id
        if handle is None:
            return frame
        assigned = session.unfinished.pop(handle, None)  # set: this frame continues that delivery
        if assigned is None:
            if session.next_id is None:
                session.next_id = given  # proton starts from the session's first delivery-id
            assigned = session.next_id
            if assigned is None:
                return frame
            session.next_id = (assigned + 1) & 0xFFFFFFFF
        if transfer.more:
            session.unfinished[handle] = assigned
        if given is None or given == assigned:
            return frame
        self.renumbered += 1
        log.debug(
            "channel %d: delivery-id %d renumbered to %d (client numbering race)", channel, given, assigned
        )
        performative = _with_delivery_id(frame[body_at:], transfer, assigned)
        payload = frame[body_at + _list_end(frame[body_at:]) :]
        rest = frame[8:body_at] + performative + payload
        return struct.pack(">IBBH", 8 + len(rest), frame[4], frame[5], channel) + rest
