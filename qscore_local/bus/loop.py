"""The endpoint's own event loop: sockets, proton transports and engine events, without proton's Container.

proton's Python `Container` routes every engine event, and a handful of its own selectable and
timer events per socket read, through several layers of Python handlers (about ten dispatches
per settled message); that, not the AMQP work, was most of the endpoint's CPU. This loop does
what the endpoint needs and no more:

- one `select` per pass over the listening socket and the client sockets;
- each socket read is pushed into its transport and the engine events it causes go straight to
  the `BusServer` method named for them (`on_delivery`, `on_link_flow`, ...);
- once the events of a pass are handled the server commits the pass's row changes and sends
  what waits on that commit (`BusServer.flush`), and only then is each transport's output
  written, in one `send` per connection per pass rather than one per message;
- every `TICK_S` the server's timers run (lock expiry, scheduled messages, session waits) and
  each transport's idle-timeout bookkeeping (heartbeats) is advanced;
- with a network latency set (`--latency-ms`), each connection's reads and writes pass through a
  pair of delay lines (qscore_local/bus/latency.py) and select wakes for the next chunk due; with
  none, connections have no lines and the path is the one above.

`serve()` uses this loop; `QSCORE_BUS_REACTOR=container` selects proton's Container instead.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time

from cproton import PN_TRANSPORT_CLOSED, isnull, pn_collector_peek, pn_event_type
from proton import Collector, Connection, Event, Transport

from qscore_local.bus import codec
from qscore_local.bus.gateway import Gateway
from qscore_local.bus.latency import DelayedConnection, DelayLine, NetworkLatency
from qscore_local.bus.loop_clients import Client as _Client
from qscore_local.bus.loop_clients import Unidentified as _Unidentified
from qscore_local.bus.loop_clients import handlers_by_event_number as _handlers_by_event_number
from qscore_local.bus.server import TICK_S, BusServer

log = logging.getLogger("qscore_local.bus")

READ_CHUNK = 64 * 1024
MAX_FLUSH_ROUNDS = 4  # flush can cause engine events that need another flush; bound the chain
LISTEN_BACKLOG = 128


class BusLoop:
    """Serve `server` on host:port until `stop()` is called (from a signal handler, say)."""

    def __init__(
        self, server: BusServer, *, host: str, port: int, latency: NetworkLatency | None = None
    ) -> None:
        self.server = server
        self.latency = latency if latency is not None and latency.enabled else None
        self.collector = Collector()
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        self._stopping = False
        self.listener = socket.create_server((host, port), backlog=LISTEN_BACKLOG, reuse_port=False)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self._handlers = _handlers_by_event_number(server)
        # Sockets the gateway hands back (WebSocket bridges) and a pipe that wakes select for them.
        self._adopted: list[socket.socket] = []
        self._adopted_lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self.selector.register(self._wake_reader, selectors.EVENT_READ, self._wake_reader)
        self.gateway = Gateway(server.admin, server.lock, self.adopt)

    def stop(self) -> None:
        self._stopping = True

    def adopt(self, sock: socket.socket) -> None:
        """Serve `sock` as an AMQP connection (called from gateway threads)."""
        with self._adopted_lock:
            self._adopted.append(sock)
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        try:
            while not self._stopping:
                with self.server.lock:
                    self._settle_pass()
                wake_at = next_tick if self.latency is None else self._next_due(next_tick)
                ready = self.selector.select(max(0.0, wake_at - time.monotonic()))
                with self.server.lock:  # gateway threads run administration requests under it
                    for key, mask in ready:
                        self._on_ready(key.data, mask)
                    if self.latency is not None:
                        self._release_due(time.monotonic())
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + TICK_S
                        self._tick()
            with self.server.lock:
                self._settle_pass()
        finally:
            self.close()

    def _on_ready(self, data: object, mask: int) -> None:
        if data is None:
            self._accept()
        elif data is self._wake_reader:
            with contextlib.suppress(OSError):
                self._wake_reader.recv(4096)
            with self._adopted_lock:
                adopted, self._adopted = self._adopted, []
            for sock in adopted:
                self._serve_amqp(sock)
        elif isinstance(data, _Unidentified):
            self._identify(data)
        elif isinstance(data, _Client):
            self._service(data, mask)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        self.selector.close()
        self.listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # ---- one pass ------------------------------------------------------------------------
    def _settle_pass(self) -> None:
        """Handle pending engine events, commit and acknowledge, then write every transport's output."""
        for _ in range(MAX_FLUSH_ROUNDS):
            self._dispatch_events()
            try:
                self.server.flush()
            except Exception:  # the endpoint never crashes; the next pass retries the commit
                log.exception("error flushing the pass")
            if not self.collector.more() and self.collector.peek() is None:
                break
        self._dispatch_events()
        for client in list(self.clients.values()):
            self._write(client)

    def _dispatch_events(self) -> None:
        # Events are wrapped as Python objects only when the server handles their type: most
        # (one PN_TRANSPORT per read or write, for one) are popped straight from the C collector.
        collector, impl = self.collector, self.collector._impl
        while True:
            raw = pn_collector_peek(impl)
            if isnull(raw):
                return
            number = pn_event_type(raw)
            handler = self._handlers.get(number)
            if handler is not None:
                event = Event.wrap(raw)
                handler(event)
                if number == PN_TRANSPORT_CLOSED:
                    self._transport_closed(event.transport)
            collector.pop()

    def _tick(self) -> None:
        try:
            self.server.tick(codec.now_ms())
        except Exception:
            log.exception("error in the endpoint's timers")
        now = time.time()
        for client in list(self.clients.values()):
            try:
                client.transport.tick(now)  # heartbeats and the peer's idle timeout
            except Exception:
                log.exception("transport tick failed")

    # ---- sockets -------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = _Unidentified(sock, address)
            self.selector.register(sock, selectors.EVENT_READ, pending)

    def _identify(self, pending: _Unidentified) -> None:
        """AMQP stays here; HTTP(S) (administration, WebSockets) goes to the gateway."""
        try:
            first = pending.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        self.selector.unregister(pending.sock)
        if not first:
            pending.sock.close()
        elif first == b"A":  # "AMQP" protocol header (plain or SASL)
            self._serve_amqp(pending.sock)
        else:
            self.gateway.hand_over(pending.sock, pending.address)

    def _serve_amqp(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        connection = Connection()
        connection.collect(self.collector)
        transport = Transport(Transport.SERVER)
        transport.sasl().allowed_mechs("ANONYMOUS")
        transport.bind(connection)
        client = _Client(sock, transport, connection)
        if self.latency is not None:
            client.delay = DelayedConnection(DelayLine(self.latency), DelayLine(self.latency))
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _service(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read(client)
        if mask & selectors.EVENT_WRITE and not client.closed:
            self._write(client)

    def _read(self, client: _Client) -> None:
        if client.delay is not None:
            self._read_delayed(client, client.delay)
            return
        transport = client.transport
        capacity = transport.capacity()
        if capacity < 0:  # the engine will read no more (closing)
            self._finish_if_done(client)
            return
        try:
            data = client.sock.recv(min(capacity, READ_CHUNK) or 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("connection read failed: %s", exc)
            data = b""
        if data and capacity > 0:
            self._push(client, client.inbound.feed(data))
        elif not data:  # the peer went away: close both directions, the engine reports it
            transport.close_tail()
            transport.close_head()

    @staticmethod
    def _push(client: _Client, data: bytes) -> None:
        """Into the engine, in pieces if a renumbered frame grew past what it takes at once."""
        transport = client.transport
        while data:
            room = transport.capacity()
            if room <= 0:  # closing: it reads no more
                return
            transport.push(data[:room])
            data = data[room:]

    def _write(self, client: _Client) -> None:
        if client.delay is not None:
            self._write_delayed(client, client.delay)
            return
        transport = client.transport
        pending = transport.pending()
        while pending > 0:
            try:
                sent = client.sock.send(transport.peek(pending) or b"")
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.info("connection write failed: %s", exc)
                transport.close_head()
                transport.close_tail()
                break
            transport.pop(sent)
            pending = transport.pending()
        self._finish_if_done(client)
        if client.closed:
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if transport.pending() > 0 else 0)
        self._want(client, wanted)

    def _want(self, client: _Client, wanted: int) -> None:
        if wanted == client.registered_mask:
            return
        if not wanted:
            self.selector.unregister(client.sock)
        elif not client.registered_mask:
            self.selector.register(client.sock, wanted, client)
        else:
            self.selector.modify(client.sock, wanted, client)
        client.registered_mask = wanted

    def _finish_if_done(self, client: _Client) -> None:
        # A delayed connection's last frames (its close) are still owed to the peer: not before.
        if client.transport.closed and (client.delay is None or not client.delay.outbound):
            self._drop(client)

    def _transport_closed(self, transport: Transport) -> None:
        for client in list(self.clients.values()):
            if client.transport is transport:
                if client.delay is None:
                    self._drop(client)
                else:
                    self._finish_if_done(client)

    # ---- emulated network latency (only with --latency-ms) -------------------------------
    def _next_due(self, next_tick: float) -> float:
        """When select must wake: the next tick or the first chunk due, whichever is sooner."""
        wake_at = next_tick
        for client in self.clients.values():
            delay = client.delay
            if delay is None:
                continue
            inbound_due = delay.inbound.next_due()
            if inbound_due is not None and inbound_due < wake_at:
                wake_at = inbound_due
            outbound_due = None if delay.write_blocked else delay.outbound.next_due()
            if outbound_due is not None and outbound_due < wake_at:
                wake_at = outbound_due
        return wake_at

    def _release_due(self, now: float) -> None:
        """Into each engine, the bytes whose delay has passed (writes go out in the next pass)."""
        for client in list(self.clients.values()):
            delay = client.delay
            if delay is None or not delay.inbound:
                continue
            data, ended = delay.inbound.take_due(now)
            if data:
                self._push(client, client.inbound.feed(data))
            if ended:  # the peer went away: close both directions, the engine reports it
                client.transport.close_tail()
                client.transport.close_head()

    def _read_delayed(self, client: _Client, delay: DelayedConnection) -> None:
        if client.transport.capacity() < 0:  # the engine will read no more (closing)
            delay.read_ended = True  # and the socket is not watched for reads while owed frames go out
            self._want(client, client.registered_mask & ~selectors.EVENT_READ)
            self._finish_if_done(client)
            return
        try:
            data = client.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("connection read failed: %s", exc)
            data = b""
        delay.inbound.put(data or None, time.monotonic())
        if not data:  # the end of stream reaches the engine after the bytes before it
            delay.read_ended = True
            self._want(client, client.registered_mask & ~selectors.EVENT_READ)

    def _write_delayed(self, client: _Client, delay: DelayedConnection) -> None:
        transport = client.transport
        now = time.monotonic()
        pending = transport.pending()
        if pending > 0:  # what the engine wrote this pass leaves now and reaches the peer D later
            delay.outbound.put(transport.peek(pending) or b"", now)
            transport.pop(pending)
        data, _ = delay.outbound.take_due(now)
        sent = 0
        while sent < len(data):
            try:
                sent += client.sock.send(data[sent:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.info("connection write failed: %s", exc)
                transport.close_head()
                transport.close_tail()
                delay.outbound.clear()  # nobody left to owe them to
                sent = len(data)
        delay.outbound.return_unsent(data[sent:])
        delay.write_blocked = sent < len(data)
        self._finish_if_done(client)
        if client.closed:
            return
        reading = 0 if delay.read_ended else selectors.EVENT_READ
        self._want(client, reading | (selectors.EVENT_WRITE if delay.write_blocked else 0))

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        client.sock.close()
        try:
            client.transport.unbind()
        except Exception:
            log.debug("transport unbind failed", exc_info=True)
