"""The proton reactor side of the endpoint: connections, links, transfers, timers, batched commits.

Everything runs on one thread, driven by `qscore_local.bus.loop.BusLoop` (or proton's Container, which
calls the same `on_*` methods). Row changes go to the store as they happen and are committed once
per pass of the loop (`flush`); sends are acknowledged and management
replies sent only after that commit.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from proton import Connection, Delivery, Endpoint, Link, Message, Receiver, Sender, Terminus, symbol, ulong
from proton.reactor import Container

from qscore_local.bus import codec, dispatch
from qscore_local.bus.addressing import SESSION_FILTER, is_request_node, node_path, session_filter
from qscore_local.bus.admin import AdminNode
from qscore_local.bus.broker import Broker
from qscore_local.bus.errors import (
    ARGUMENT_ERROR,
    NOT_ALLOWED,
    NOT_FOUND,
    SESSION_LOCK_LOST,
    TIMEOUT,
    BrokerError,
    error,
)
from qscore_local.bus.handler_guard import guarded
from qscore_local.bus.links import (
    Consumer,
    PendingSessionAttach,
    Producer,
    ReplyLink,
    RequestLink,
    drain_replies,
    role_of,
    send_reply,
    set_role,
)
from qscore_local.bus.management import CBS_NODE, ManagementNode, cbs_response

log = logging.getLogger("qscore_local.bus")

LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
TIMEOUT_PROPERTY = "com.microsoft:timeout"
PRODUCER_CREDIT = 1000
REQUEST_CREDIT = 100
TICK_S = 0.05
DEFAULT_SESSION_WAIT_MS = 65_000  # the service's default operation timeout


class BusServer:
    """proton handler for the whole endpoint; `Container(server).run()` serves until stopped."""

    def __init__(self, broker: Broker, *, host: str, port: int) -> None:
        self.broker = broker
        self.host, self.port = host, port
        self.container: Container | None = None
        self.management = ManagementNode(broker, self._settled_out_of_band)
        self.admin = AdminNode(broker)
        # Held by the loop while it runs engine events; gateway threads take it for admin requests.
        self.lock = threading.RLock()
        self.consumers: dict[str, list[Consumer]] = {}
        self.pending_sessions: list[PendingSessionAttach] = []
        self.pending_acks: list[Delivery] = []
        self.pending_replies: list[tuple[Link, str, Message]] = []

    # ---- reactor lifecycle ---------------------------------------------------------------
    @guarded
    def on_reactor_init(self, event: Any) -> None:
        self.container = event.container
        event.container.listen(f"{self.host}:{self.port}")
        event.container.schedule(TICK_S, self)

    @guarded
    def on_timer_task(self, event: Any) -> None:
        self.tick(codec.now_ms())
        event.container.schedule(TICK_S, self)

    def tick(self, now_ms: int) -> None:
        """Every TICK_S: lapse locks, promote scheduled messages, time out session waits."""
        self.broker.advance_time(now_ms)
        self._expire_session_locks(now_ms)
        self._expire_pending_sessions(now_ms)

    @guarded
    def on_reactor_quiesced(self, event: Any) -> None:
        self.flush()

    def flush(self) -> None:
        """Commit row changes, then acknowledge sends, send replies and pump consumers."""
        if self.broker.store.dirty:
            self.broker.store.commit()
        acks, self.pending_acks = self.pending_acks, []
        for delivery in acks:
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
        replies, self.pending_replies = self.pending_replies, []
        for request_link, node, response in replies:
            send_reply(request_link, node, response)
        self._pump(codec.now_ms())

    # ---- connections and sessions --------------------------------------------------------
    @guarded
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")

    @guarded
    def on_connection_remote_open(self, event: Any) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.container = "qscore-bus"
            event.connection.open()

    @guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @guarded
    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    @guarded
    def on_connection_remote_close(self, event: Any) -> None:
        self._forget_connection(event.connection)
        event.connection.close()

    @guarded
    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget_connection(event.connection)

    def _forget_connection(self, connection: Connection) -> None:
        link = connection.link_head(0)
        while link is not None:
            self._forget_link(link)
            link = link.next(0)

    # ---- links ---------------------------------------------------------------------------
    @guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        try:
            if link.is_sender:
                self._attach_outgoing(link)
            else:
                self._attach_incoming(link)
        except BrokerError as exc:
            self._refuse(link, exc.condition, exc.description)

    def _open(self, link: Link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        log.info("refusing link %s: %s", link.name, description)
        set_role(link, None)
        if link.is_sender and condition in (NOT_ALLOWED, TIMEOUT, ARGUMENT_ERROR):
            # A receiver refused for the wrong kind of queue, a bad filter or no free session: Service Bus
            # attaches with a null source and detaches with the error; an echoed source tells the
            # SDK the link is up (it then waits forever). A session another receiver holds keeps
            # the echoed source: the SDK then reads the detach as SessionCannotBeLockedError.
            link.source.type = Terminus.UNSPECIFIED  # encoded as null
            link.target.copy(link.remote_target)
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
            link.open()
        else:
            self._open(link)
        link.condition = error(condition, description)
        link.close()

    def _attach_incoming(self, link: Receiver) -> None:
        address = node_path(link.remote_target.address)
        if is_request_node(address):
            set_role(link, RequestLink(link, address))
            self._open(link)
            link.flow(REQUEST_CREDIT)
            return
        try:
            entity = self.broker.entity(address)
        except BrokerError as exc:
            # The SDK sends as soon as the link attaches: refusing the transfer itself is what
            # surfaces the condition to the caller (a bare detach reads as an unknown error).
            set_role(link, Producer(link, None, (exc.condition, exc.description)))
            self._open(link)
            link.flow(1)
            return
        set_role(link, Producer(link, entity))
        link.max_message_size = entity.config.max_message_size_bytes
        self._open(link)
        link.flow(PRODUCER_CREDIT)

    def _attach_outgoing(self, link: Sender) -> None:
        address = node_path(link.remote_source.address)
        if is_request_node(address):
            set_role(link, ReplyLink(link, address))
            self._open(link)
            return
        entity = self.broker.entity(address)
        receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        wants_session, session_id = session_filter(link)
        if entity.requires_session != wants_session:
            needed = "requires" if entity.requires_session else "does not support"
            raise BrokerError(NOT_ALLOWED, f"The queue '{entity.name}' {needed} session receivers.")
        if not wants_session:
            self._start_consumer(Consumer(link, entity, receive_and_delete), now_ms=codec.now_ms())
            return
        now_ms = codec.now_ms()
        consumer = Consumer(link, entity, receive_and_delete, wants_session=True)
        chosen = entity.lock_session(session_id, consumer, now_ms)
        if chosen is None:
            wait_ms = int(
                (link.remote_properties or {}).get(symbol(TIMEOUT_PROPERTY), DEFAULT_SESSION_WAIT_MS)
            )
            self.pending_sessions.append(
                PendingSessionAttach(link, entity, receive_and_delete, now_ms + wait_ms)
            )
            return
        consumer.session_id = chosen
        self._start_consumer(consumer, now_ms=now_ms)

    def _start_consumer(self, consumer: Consumer, *, now_ms: int) -> None:
        link = consumer.link
        set_role(link, consumer)
        if consumer.session_id is not None:
            held = consumer.entity.session_locks[consumer.session_id]
            link.properties = {LOCKED_UNTIL_UTC: ulong(codec.ms_to_dotnet_ticks(held.locked_until_ms))}
        self._open(link)
        if consumer.session_id is not None:
            link.source.filter.clear()
            link.source.filter.put_dict({symbol(SESSION_FILTER): consumer.session_id})
        self.consumers.setdefault(consumer.entity.name, []).append(consumer)
        dispatch.send_available(self.broker, consumer, now_ms)

    @guarded
    def on_link_remote_close(self, event: Any) -> None:
        self._forget_link(event.link)
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def _forget_link(self, link: Link) -> None:
        role = role_of(link)
        self.pending_sessions = [pending for pending in self.pending_sessions if pending.link != link]
        if isinstance(role, Consumer):
            listeners = self.consumers.get(role.entity.name, [])
            if role in listeners:
                listeners.remove(role)
            if role.session_id is not None:
                self.broker.release_session(role.entity, role.session_id, role)
        set_role(link, None)

    @guarded
    def on_link_flow(self, event: Any) -> None:
        role = role_of(event.link)
        if isinstance(role, Consumer):
            if role.session_id is not None and event.link.credit > 0:
                self._renew_session_on_receive(role)
            dispatch.send_available(self.broker, role, codec.now_ms())
        elif isinstance(role, ReplyLink):
            drain_replies(role)
        elif event.link.is_sender and event.link.drain_mode:
            event.link.drained()

    # ---- deliveries ----------------------------------------------------------------------
    @guarded
    def on_delivery(self, event: Any) -> None:
        link, delivery = event.link, event.delivery
        role = role_of(link)
        if isinstance(role, Consumer):
            dispatch.apply_settlement(self.broker, role, delivery, codec.now_ms())
        elif isinstance(role, Producer):
            self._on_transfer(role, delivery)
        elif isinstance(role, RequestLink):
            self._on_request(role, delivery)
        elif delivery.settled:
            delivery.settle()

    def _read(self, link: Receiver, delivery: Delivery) -> bytes | None:
        if delivery.partial or not delivery.readable:
            return None
        data = link.recv(delivery.pending) or b""
        link.advance()
        if link.credit < PRODUCER_CREDIT // 2:
            link.flow(PRODUCER_CREDIT - link.credit)
        return bytes(data)

    def _on_transfer(self, producer: Producer, delivery: Delivery) -> None:
        data = self._read(producer.link, delivery)
        if data is None:
            return
        if producer.entity is None:
            condition, description = producer.refusal or (NOT_FOUND, "Unknown address.")
            delivery.local.condition = error(condition, description)
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            producer.link.condition = error(condition, description)
            producer.link.close()
            return
        try:
            messages = codec.unpack_transfer(data)
            self.broker.enqueue_all(producer.entity, messages, codec.now_ms())
        except (BrokerError, codec.MessageFormatError) as exc:
            condition = getattr(exc, "condition", "amqp:decode-error")
            delivery.local.condition = error(condition, str(exc))
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        self.pending_acks.append(delivery)

    def _on_request(self, request_link: RequestLink, delivery: Delivery) -> None:
        data = self._read(request_link.link, delivery)
        if data is None:
            return
        request = Message()
        try:
            request.decode(data)
        except Exception as exc:  # a garbled request must not take the endpoint down
            delivery.local.condition = error("amqp:decode-error", str(exc))
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if request_link.node == CBS_NODE:
            response = cbs_response(request, self.broker)
        else:
            response = self.management.handle(request_link.node, request, codec.now_ms())
        self.pending_replies.append((request_link.link, request_link.node, response))

    def _settled_out_of_band(self, token: uuid.UUID, completed: bool) -> None:
        for consumers in self.consumers.values():
            if dispatch.settle_out_of_band(consumers, token, completed=completed):
                return

    # ---- pumping and timers --------------------------------------------------------------
    def _pump(self, now_ms: int) -> None:
        while self.broker.wakeups:
            name = self.broker.wakeups.pop()
            self._grant_pending_sessions(name, now_ms)
            consumers = self.consumers.get(name, [])
            for consumer in list(consumers):
                dispatch.send_available(self.broker, consumer, now_ms)
            if len(consumers) > 1:  # rotate so the next wakeup starts with another receiver
                consumers.append(consumers.pop(0))

    def _grant_pending_sessions(self, entity_name: str, now_ms: int) -> None:
        for pending in [p for p in self.pending_sessions if p.entity.name == entity_name]:
            consumer = Consumer(pending.link, pending.entity, pending.receive_and_delete, wants_session=True)
            chosen = pending.entity.lock_session(None, consumer, now_ms)
            if chosen is None:
                return
            self.pending_sessions.remove(pending)
            consumer.session_id = chosen
            self._start_consumer(consumer, now_ms=now_ms)

    def _expire_pending_sessions(self, now_ms: int) -> None:
        for pending in [p for p in self.pending_sessions if p.deadline_ms <= now_ms]:
            self.pending_sessions.remove(pending)
            self._refuse(pending.link, TIMEOUT, "No session is available within the requested time.")

    def _renew_session_on_receive(self, consumer: Consumer) -> None:
        # A receive (the client granting credit) on a session receiver renews its session lock,
        # as the service does; settling, peeking or idling does not.
        held = consumer.entity.session_locks.get(consumer.session_id or "")
        now_ms = codec.now_ms()
        if held is not None and held.owner is consumer and held.locked_until_ms > now_ms:
            held.locked_until_ms = now_ms + int(consumer.entity.config.lock_duration_s * 1000)

    def _expire_session_locks(self, now_ms: int) -> None:
        for consumers in self.consumers.values():
            for consumer in list(consumers):
                if consumer.session_id is None:
                    continue
                held = consumer.entity.session_locks.get(consumer.session_id)
                if held is None or held.owner is not consumer or held.locked_until_ms <= now_ms:
                    self._forget_link(consumer.link)
                    consumer.link.condition = error(SESSION_LOCK_LOST, "The session lock has expired.")
                    consumer.link.close()
