"""The administration (ATOM over HTTP) side of the endpoint, as `ServiceBusAdministrationClient` uses it.

Supported: get a queue (`GET /{queue}`, with runtime counts), list queues
(`GET /$Resources/queues?$skip=&$top=`), create a queue (`PUT /{queue}`) and delete one
(`DELETE /{queue}`). Anything else (topics, subscriptions, rules, updating a queue, namespace
properties) gets 400 with the XML error body Service Bus uses, which the SDK raises as
`HttpResponseError`. Callers hold the server's lock: the broker is not thread-safe.
"""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from pydantic import ValidationError

from qscore_local.bus.broker import Broker
from qscore_local.bus.config import QueueConfig
from qscore_local.bus.errors import BrokerError

ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
SB_COUNTS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
FOREVER = "P10675199DT2H48M5.4775807S"  # TimeSpan.MaxValue, what Service Bus reports for "never"
STANDARD_MAX_KB = 256
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$")


@dataclass(frozen=True, slots=True)
class AdminResponse:
    status: int
    body: str
    content_type: str = "application/atom+xml;type=entry;charset=utf-8"


def parse_duration_s(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not an ISO 8601 duration")
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return FOREVER
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs + (seconds - whole):g}"
    return f"P{days}DT{hours}H{minutes}M{secs_text}S" if days else f"PT{hours}H{minutes}M{secs_text}S"


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_response(status: int, detail: str) -> AdminResponse:
    body = f"<Error><Code>{status}</Code><Detail>{escape(detail)}</Detail></Error>"
    return AdminResponse(status, body, "application/xml; charset=utf-8")


class AdminNode:
    """Answers the administration client's requests against the broker's queues."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._created: dict[str, datetime.datetime] = {}

    def handle(self, method: str, target: str, body: bytes, host: str) -> AdminResponse:
        url = urlsplit(target)
        path = unquote(url.path).strip("/")
        query = parse_qs(url.query)
        try:
            if method == "GET" and path.lower() == "$resources/queues":
                skip = int(query.get("$skip", ["0"])[0])
                top = int(query.get("$top", ["100"])[0])
                return self._list(host, skip, top)
            if not path or path.startswith("$") or "/" in path:
                return error_response(400, self._unsupported(method, path))
            if method == "GET":
                return self._get(host, path)
            if method == "PUT":
                return self._create(host, path, body, query)
            if method == "DELETE":
                return self._delete(path)
        except BrokerError as exc:
            return error_response(404, exc.description)
        except (ValueError, ET.ParseError, ValidationError) as exc:
            return error_response(400, f"The request is malformed: {exc}")
        return error_response(400, self._unsupported(method, path))

    @staticmethod
    def _unsupported(method: str, path: str) -> str:
        return (
            f"SubCode=40000. The operation {method} /{path} is not supported by the local Service Bus "
            "endpoint: only queues can be read, listed, created and deleted (topics, subscriptions, "
            "rules and entity updates are not)."
        )

    def _queue_config(self, name: str) -> QueueConfig:
        entity = self._broker.entity(name)
        if entity.is_dead_letter:
            raise BrokerError("amqp:not-found", f"The messaging entity '{name}' could not be found.")
        return entity.config

    def _get(self, host: str, name: str) -> AdminResponse:
        try:
            config = self._queue_config(name)
        except BrokerError:
            # Service Bus answers a GET for a missing entity with an empty feed; the SDK raises
            # ResourceNotFoundError for it. 404 raises the same error and says so plainly.
            return error_response(404, f"The messaging entity '{name}' could not be found.")
        return AdminResponse(200, self._entry(host, config, root=True))

    def _list(self, host: str, skip: int, top: int) -> AdminResponse:
        names = sorted(self._broker.queue_names(), key=str.lower)
        page = names[skip : skip + top]
        entries = "".join(self._entry(host, self._queue_config(name), root=False) for name in page)
        now = _iso(datetime.datetime.now(datetime.UTC))
        links = f'<link rel="self" href="https://{host}/$Resources/queues?$skip={skip}&amp;$top={top}"/>'
        if skip + top < len(names):
            after = skip + top
            links += (
                f'<link rel="next" href="https://{host}/$Resources/queues?$skip={after}&amp;$top={top}"/>'
            )
        body = (
            f'<feed xmlns="{ATOM}"><title type="text">Queues</title>'
            f"<id>https://{host}/$Resources/queues</id><updated>{now}</updated>{links}{entries}</feed>"
        )
        return AdminResponse(200, body, "application/atom+xml;type=feed;charset=utf-8")

    def _create(self, host: str, name: str, body: bytes, query: dict[str, list[str]]) -> AdminResponse:
        description = ET.fromstring(body).find(f"{{{ATOM}}}content/{{{SB}}}QueueDescription")
        if description is None:
            return error_response(400, self._unsupported("PUT", name))
        if self._exists(name):
            if "*" in ",".join(query.get("If-Match", [])):
                return error_response(400, self._unsupported("PUT (update)", name))
            return error_response(
                409, f"SubCode=40900. Conflict. The messaging entity '{name}' already exists."
            )
        config = QueueConfig.model_validate({"name": name, **_config_fields(description)})
        self._broker.add_queue(config)
        self._created[name] = datetime.datetime.now(datetime.UTC)
        return AdminResponse(201, self._entry(host, config, root=True))

    def _delete(self, name: str) -> AdminResponse:
        if not self._exists(name):
            return error_response(404, f"The messaging entity '{name}' could not be found.")
        self._broker.remove_queue(self._queue_config(name).name)
        return AdminResponse(200, "")

    def _exists(self, name: str) -> bool:
        try:
            self._queue_config(name)
        except BrokerError:
            return False
        return True

    def _entry(self, host: str, config: QueueConfig, *, root: bool) -> str:
        created = _iso(self._created.get(config.name, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)))
        counts = self._broker.counts()[config.name]
        size = self._broker.size_in_bytes(config.name)
        total = counts.active + counts.locked + counts.scheduled + counts.dead_letter
        count_details = (
            f'<CountDetails xmlns:d2p1="{SB_COUNTS}">'
            f"<d2p1:ActiveMessageCount>{counts.active + counts.locked}</d2p1:ActiveMessageCount>"
            f"<d2p1:DeadLetterMessageCount>{counts.dead_letter}</d2p1:DeadLetterMessageCount>"
            f"<d2p1:ScheduledMessageCount>{counts.scheduled}</d2p1:ScheduledMessageCount>"
            "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
            "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>"
        )
        flag = {True: "true", False: "false"}
        fields = (
            f"<LockDuration>{format_duration(config.lock_duration_s)}</LockDuration>"
            "<MaxSizeInMegabytes>1024</MaxSizeInMegabytes>"
            f"<RequiresDuplicateDetection>{flag[config.requires_duplicate_detection]}</RequiresDuplicateDetection>"
            f"<RequiresSession>{flag[config.requires_session]}</RequiresSession>"
            f"<DefaultMessageTimeToLive>{format_duration(config.default_ttl_s)}</DefaultMessageTimeToLive>"
            "<DeadLetteringOnMessageExpiration>"
            f"{flag[config.dead_lettering_on_expiration]}</DeadLetteringOnMessageExpiration>"
            "<DuplicateDetectionHistoryTimeWindow>"
            f"{format_duration(config.duplicate_detection_window_s)}</DuplicateDetectionHistoryTimeWindow>"
            f"<MaxDeliveryCount>{config.max_delivery_count}</MaxDeliveryCount>"
            "<EnableBatchedOperations>true</EnableBatchedOperations>"
            f"<SizeInBytes>{size}</SizeInBytes><MessageCount>{total}</MessageCount>"
            "<IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules/>"
            f"<Status>Active</Status><CreatedAt>{created}</CreatedAt><UpdatedAt>{created}</UpdatedAt>"
            f"<AccessedAt>{created}</AccessedAt><SupportOrdering>true</SupportOrdering>{count_details}"
            f"<AutoDeleteOnIdle>{FOREVER}</AutoDeleteOnIdle><EnablePartitioning>false</EnablePartitioning>"
            "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableExpress>false</EnableExpress>"
            f"<MaxMessageSizeInKilobytes>{config.max_message_size_bytes // 1024}</MaxMessageSizeInKilobytes>"
        )
        href = f"https://{host}/{escape(config.name)}?api-version=2021-05"
        namespace = f' xmlns="{ATOM}"' if root else ""
        return (
            f'<entry{namespace}><id>{href}</id><title type="text">{escape(config.name)}</title>'
            f"<published>{created}</published><updated>{created}</updated>"
            f'<author><name>qscore-local</name></author><link rel="self" href="{href}"/>'
            f'<content type="application/xml"><QueueDescription xmlns="{SB}" '
            'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            f"{fields}</QueueDescription></content></entry>"
        )


def _config_fields(description: ET.Element) -> dict[str, object]:
    """QueueConfig fields from a QueueDescription the client sent (unset fields keep defaults)."""

    def text(tag: str) -> str | None:
        element = description.find(f"{{{SB}}}{tag}")
        return None if element is None or element.text is None else element.text.strip()

    fields: dict[str, object] = {}
    durations = {
        "LockDuration": "lock_duration_s",
        "DefaultMessageTimeToLive": "default_ttl_s",
        "DuplicateDetectionHistoryTimeWindow": "duplicate_detection_window_s",
    }
    for tag, field in durations.items():
        value = text(tag)
        if value and value != FOREVER:
            seconds = parse_duration_s(value)
            if seconds < 10 * 365 * 86400:  # "forever" spelled another way
                fields[field] = seconds
    flags = {
        "RequiresSession": "requires_session",
        "RequiresDuplicateDetection": "requires_duplicate_detection",
        "DeadLetteringOnMessageExpiration": "dead_lettering_on_expiration",
    }
    for tag, field in flags.items():
        value = text(tag)
        if value is not None:
            fields[field] = value.lower() == "true"
    count = text("MaxDeliveryCount")
    if count:
        fields["max_delivery_count"] = int(count)
    # Unset, a queue gets the Standard tier's limit (256 KB), as on a Standard namespace.
    fields["max_message_size_bytes"] = int(text("MaxMessageSizeInKilobytes") or STANDARD_MAX_KB) * 1024
    return fields
