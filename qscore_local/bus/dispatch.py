"""Moving messages over links: deliveries to consumers and the client's settlements of them."""

from __future__ import annotations

import uuid

from proton import Condition, Delivery, Link

from qscore_local.bus import codec
from qscore_local.bus.broker import Broker
from qscore_local.bus.errors import BrokerError, error
from qscore_local.bus.links import Consumer

DEAD_LETTER_CONDITION = "com.microsoft:dead-letter"
TOKEN_ATTRIBUTE = "qscore_lock_token"


def send_available(broker: Broker, consumer: Consumer, now_ms: int) -> int:
    """Deliver ready messages while the consumer has credit; returns how many went out."""
    link = consumer.link
    if link.state & Link.LOCAL_CLOSED or (consumer.entity.requires_session and consumer.session_id is None):
        return 0
    sent = 0
    while link.credit > 0:
        stored = broker.acquire(
            consumer.entity, consumer.session_id, delete=consumer.receive_and_delete, now_ms=now_ms
        )
        if stored is None:
            break
        token = stored.lock_token or uuid.uuid4()
        payload = codec.encode_delivery(
            stored.payload,
            sequence_number=stored.seq,
            enqueued_ms=stored.enqueued_ms,
            delivery_count=stored.delivery_count,
            locked_until_ms=None if consumer.receive_and_delete else stored.locked_until_ms,
            lock_token=None if consumer.receive_and_delete else token,
        )
        delivery = link.delivery(codec.lock_token_tag(token))  # type: ignore[arg-type]
        link.stream(payload)
        link.advance()
        if consumer.receive_and_delete:
            delivery.settle()
        else:
            setattr(delivery, TOKEN_ATTRIBUTE, token)
            consumer.inflight[token] = delivery
        sent += 1
    if link.drain_mode and link.credit > 0:
        link.drained()
    return sent


def _confirm(delivery: Delivery, state: int, condition: Condition | None = None) -> None:
    """Echo the outcome the broker applied (SDK 7.15 compares it with what it asked for)."""
    if condition is not None:
        delivery.local.condition = condition
    delivery.update(state)
    delivery.settle()


def apply_settlement(broker: Broker, consumer: Consumer, delivery: Delivery, now_ms: int) -> None:
    """The client settled (or stated an outcome for) a message it received on this link."""
    token: uuid.UUID | None = getattr(delivery, TOKEN_ATTRIBUTE, None)
    state = delivery.remote_state
    if token is None or state not in (
        Delivery.ACCEPTED,
        Delivery.REJECTED,
        Delivery.RELEASED,
        Delivery.MODIFIED,
    ):
        if delivery.settled:
            delivery.settle()
        return
    consumer.inflight.pop(token, None)
    try:
        if state == Delivery.ACCEPTED:
            broker.complete(token, now_ms)
        elif state == Delivery.RELEASED:
            broker.abandon(token, now_ms, count_delivery=False)
        elif state == Delivery.MODIFIED:
            if delivery.remote.undeliverable:  # modified, undeliverable-here: the SDK's defer
                broker.defer(token, now_ms)
            else:
                broker.abandon(token, now_ms, count_delivery=delivery.remote.failed)
        else:
            reason, description = _dead_letter_details(delivery.remote.condition)
            broker.dead_letter(token, reason, description, now_ms)
    except BrokerError as exc:
        if delivery.settled:  # fire-and-forget settle: nobody waits for the error
            delivery.settle()
            return
        _confirm(delivery, Delivery.REJECTED, error(exc.condition, exc.description))
        return
    if delivery.settled:
        delivery.settle()
        return
    _confirm(delivery, state)


def _dead_letter_details(condition: Condition | None) -> tuple[str, str]:
    if condition is None:
        return "", ""
    info = condition.info or {}
    reason = info.get("DeadLetterReason") if isinstance(info, dict) else None
    description = info.get("DeadLetterErrorDescription") if isinstance(info, dict) else None
    return str(reason or ""), str(description or condition.description or "")


def settle_out_of_band(consumers: list[Consumer], token: uuid.UUID, *, completed: bool) -> bool:
    """A lock settled through `$management`: settle its link delivery so the client forgets it.

    The disposition carries an outcome (accepted, or modified for abandon / dead-letter): the
    SDK matches a session's dispositions to its management sender by delivery id alone, and
    one without a state there makes its callback fail (a TypeError logged as a warning)."""
    for consumer in consumers:
        delivery = consumer.inflight.pop(token, None)
        if delivery is not None:
            delivery.update(Delivery.ACCEPTED if completed else Delivery.MODIFIED)
            delivery.settle()
            return True
    return False
