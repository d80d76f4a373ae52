"""Queue declarations for the local Service Bus endpoint, read from a small YAML file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_queues.yaml")
DEAD_LETTER_SUFFIX = "/$deadletterqueue"


class QueueConfigError(ValueError):
    """The queue config file is missing, unreadable or does not describe valid queues."""


class QueueConfig(BaseModel):
    """One queue the endpoint holds, with the Service Bus settings it honours."""

    name: str = Field(min_length=1, max_length=260)
    lock_duration_s: float = Field(default=30, gt=0)
    max_delivery_count: int = Field(default=10, ge=1)
    default_ttl_s: float | None = Field(default=None, gt=0)
    requires_session: bool = False
    dead_lettering_on_expiration: bool = False
    max_message_size_bytes: int = Field(default=1_048_576, ge=1024)
    requires_duplicate_detection: bool = False
    duplicate_detection_window_s: float = Field(default=600, gt=0)

    @field_validator("name")
    @classmethod
    def _plain_entity_name(cls, value: str) -> str:
        # `$` paths are the endpoint's own nodes ($cbs, $management, $deadletterqueue).
        if "$" in value or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"queue name {value!r} may not contain '$' or start/end with '/'")
        return value


def parse_queue_config(document: object, *, source: str = "<config>") -> list[QueueConfig]:
    """Validate a parsed YAML document: either a list of queues or a mapping with a `queues` list."""
    entries = document.get("queues") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise QueueConfigError(f"{source}: expected a list of queues (or a `queues:` list)")
    try:
        queues = [QueueConfig.model_validate(entry) for entry in entries]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise QueueConfigError(f"{source}: invalid queue entry ({where}: {first['msg']})") from None
    names = [queue.name for queue in queues]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise QueueConfigError(f"{source}: duplicate queue names {duplicates}")
    return queues


def load_queue_config(path: Path | None = None) -> list[QueueConfig]:
    """Queues declared in `path` (None = the shipped default_queues.yaml)."""
    config_path = path or DEFAULT_CONFIG_PATH
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QueueConfigError(f"cannot read queue config {config_path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise QueueConfigError(f"{config_path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_queue_config(document, source=str(config_path))


def dump_queue_config(queues: list[QueueConfig], path: Path) -> None:
    """Write queues in the format load_queue_config reads (used by the launcher for test queues)."""
    document = {"queues": [queue.model_dump(exclude_none=True) for queue in queues]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
