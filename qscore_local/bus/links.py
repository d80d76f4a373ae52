"""What each attached link is for, kept on the proton link so later events can find it."""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass, field

from proton import Delivery, Endpoint, Link, Message, Receiver, Sender

from qscore_local.bus.entity import Entity

log = logging.getLogger("qscore_local.bus")


@dataclass(eq=False)
class Consumer:
    """A client's receive link on a queue: the server sends messages on it."""

    link: Sender
    entity: Entity
    receive_and_delete: bool
    session_id: str | None = None  # the session this receiver holds (session queues only)
    wants_session: bool = False
    # Lock tokens delivered on this link and not yet settled by the client.
    inflight: dict[uuid.UUID, Delivery] = field(default_factory=dict)


@dataclass(eq=False)
class PendingSessionAttach:
    """A next-available-session receiver waiting for a session to become free."""

    link: Sender
    entity: Entity
    receive_and_delete: bool
    deadline_ms: int


@dataclass(eq=False)
class Producer:
    """A client's send link to a queue: the server receives messages on it."""

    link: Receiver
    entity: Entity | None  # None: unknown address, refused at the first transfer
    refusal: tuple[str, str] | None = None


@dataclass(eq=False)
class RequestLink:
    """A client's send link to `$cbs` or `<queue>/$management` (requests arrive here)."""

    link: Receiver
    node: str  # "$cbs", "$management" or "<queue>/$management"


@dataclass(eq=False)
class ReplyLink:
    """A client's receive link from a request/response node (responses go out here)."""

    link: Sender
    node: str
    backlog: deque[bytes] = field(default_factory=deque)


Role = Consumer | Producer | RequestLink | ReplyLink

ROLE_ATTRIBUTE = "qscore_role"


def role_of(link: Link) -> Role | None:
    try:
        return getattr(link, ROLE_ATTRIBUTE)
    except AttributeError:
        return None


def set_role(link: Link, role: Role | None) -> None:
    setattr(link, ROLE_ATTRIBUTE, role)


def send_reply(request_link: Link, node: str, response: Message) -> None:
    """Queue a response for the client's receive link on the same node and session."""
    link = request_link.session.connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        role = role_of(link)
        if isinstance(role, ReplyLink) and role.node == node and link.session == request_link.session:
            role.backlog.append(response.encode())
            drain_replies(role)
            return
        link = link.next(Endpoint.LOCAL_ACTIVE)
    log.info("dropping a %s response: no reply link attached", node)


def drain_replies(reply: ReplyLink) -> None:
    link = reply.link
    while reply.backlog and link.credit > 0:
        delivery = link.delivery(uuid.uuid4().bytes)  # type: ignore[arg-type]
        link.stream(reply.backlog.popleft())
        link.advance()
        delivery.settle()
