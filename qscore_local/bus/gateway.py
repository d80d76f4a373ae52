"""The endpoint's non-AMQP front door on the same port: the administration API and AMQP over WebSockets.

The loop peeks at each new connection's first bytes. AMQP (`AMQP...`) stays on the loop; anything
else is handed to a thread here: a TLS ClientHello (0x16) is answered with a self-signed
certificate (the administration client always speaks https), then the HTTP request is read.
`GET /$servicebus/websocket` with `Upgrade: websocket` (subprotocol AMQPWSB10, what the SDK's
`TransportType.AmqpOverWebsocket` asks for) becomes a bridge: WebSocket binary frames are
unwrapped into one end of a socket pair whose other end the loop serves as an AMQP connection.
Every other request goes to `AdminNode` under the server's lock.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import logging
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from qscore_local.bus.admin import AdminNode

log = logging.getLogger("qscore_local.bus")

WEBSOCKET_PATH = "/$servicebus/websocket"
WEBSOCKET_SUBPROTOCOL = "AMQPWSB10"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TLS_HANDSHAKE = 0x16


def _self_signed_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for localhost / 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qscore-local-bus")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(alt_names, critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
    return context


class Gateway:
    """Serves the non-AMQP connections the loop hands over, one thread each."""

    def __init__(
        self, admin: AdminNode, lock: threading.RLock, adopt: Callable[[socket.socket], None]
    ) -> None:
        self.admin = admin
        self.lock = lock
        self.adopt = adopt  # give the loop a socket to serve as an AMQP connection
        self._tls: ssl.SSLContext | None = None
        self._tls_lock = threading.Lock()

    def tls_context(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._tls is None:
                self._tls = _self_signed_context()
            return self._tls

    def hand_over(self, sock: socket.socket, address: Any) -> None:
        thread = threading.Thread(target=self._serve, args=(sock, address), daemon=True, name="bus-gateway")
        thread.start()

    def _serve(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(300)
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first[0] == TLS_HANDSHAKE:
                sock = self.tls_context().wrap_socket(sock, server_side=True)
            _HttpHandler(sock, address, self)
        except (OSError, ssl.SSLError) as exc:
            log.info("gateway connection ended: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qscore-local-bus"

    def __init__(self, sock: socket.socket, address: Any, gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(sock, address, None)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin %s", format % args)

    def _admin(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.path
        if self.headers.get("If-Match"):
            target += ("&" if "?" in target else "?") + "If-Match=" + self.headers["If-Match"]
        with self.gateway.lock:
            response = self.gateway.admin.handle(self.command, target, body, self.headers.get("Host", ""))
        payload = response.body.encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if (
            self.path.split("?")[0] == WEBSOCKET_PATH
            and "websocket" in self.headers.get("Upgrade", "").lower()
        ):
            self._websocket()
            return
        self._admin()

    do_PUT = do_DELETE = do_POST = do_PATCH = _admin

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        if WEBSOCKET_SUBPROTOCOL in offered:
            self.send_header("Sec-WebSocket-Protocol", WEBSOCKET_SUBPROTOCOL)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        loop_side, bridge_side = socket.socketpair()
        self.gateway.adopt(loop_side)
        try:
            _bridge(self.connection, self.rfile, bridge_side)
        finally:
            bridge_side.close()


def _read_exact(stream: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise ConnectionError("websocket peer closed")
        data += chunk
    return data


def _read_frame(stream: Any) -> tuple[int, bytes]:
    """(opcode, payload) of one client frame (clients always mask)."""
    head = _read_exact(stream, 2)
    opcode, masked, length = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", _read_exact(stream, 2))
    elif length == 127:
        (length,) = struct.unpack(">Q", _read_exact(stream, 8))
    mask = _read_exact(stream, 4) if masked else b""
    payload = _read_exact(stream, length)
    if masked:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return opcode, payload


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 126)) + struct.pack(">H", length)
    else:
        header = bytes((0x80 | opcode, 127)) + struct.pack(">Q", length)
    return header + payload


def _bridge(client: socket.socket, client_stream: Any, loop_side: socket.socket) -> None:
    """Pump WebSocket frames <-> raw AMQP bytes until either side closes."""
    write_lock = threading.Lock()

    def to_client() -> None:
        try:
            while True:
                data = loop_side.recv(65536)
                if not data:
                    break
                with write_lock:
                    client.sendall(_frame(0x2, data))
        except OSError:
            pass
        with contextlib.suppress(OSError), write_lock:
            client.sendall(_frame(0x8, b""))
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)

    outbound = threading.Thread(target=to_client, daemon=True, name="bus-ws-out")
    outbound.start()
    try:
        while True:
            opcode, payload = _read_frame(client_stream)
            if opcode in (0x0, 0x1, 0x2):
                loop_side.sendall(payload)
            elif opcode == 0x9:  # ping
                with write_lock:
                    client.sendall(_frame(0xA, payload))
            elif opcode == 0x8:
                break
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            loop_side.shutdown(socket.SHUT_RDWR)
        outbound.join(timeout=5)
