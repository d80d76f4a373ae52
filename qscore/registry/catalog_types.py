"""Plain values read from the MLflow registry: versions, flights, events, a model's state."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qscore.registry.signature import canonical_json

# Aliases a flight puts on its version (beside the `qscore.flight` tag that holds its share).
FLIGHT_ALIASES = ("canary", "shadow")


class CatalogError(Exception):
    """A request the registry refuses; the message is one line for a person."""


class UnknownVersion(CatalogError):
    """A version number the registry does not have for this model."""


@dataclass(frozen=True)
class Event:
    at: float  # epoch seconds
    by: str
    action: str
    version: str | None = None
    detail: str = ""

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Event:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class FlightInfo:
    mode: Literal["canary", "shadow"]
    version: str
    weight: float  # share of production traffic, 0..1

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FlightInfo:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str
    created_at: float
    registered_by: str
    signature: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_fingerprint: str = ""
    git_commit: str = ""
    description: str = ""
    class_output: str = ""  # the config's qscore.predicted_class_output, if set


def _json_tag(tags: dict[str, str], key: str) -> Any:
    value = tags.get(key)
    return json.loads(value) if value else {}


def version_from_mlflow(model_version: Any) -> VersionInfo:
    tags = dict(model_version.tags)
    return VersionInfo(
        version=str(model_version.version),
        run_id=str(model_version.run_id),
        created_at=model_version.creation_timestamp / 1000,
        registered_by=tags.get("qscore.registered_by", ""),
        signature=_json_tag(tags, "qscore.signature"),
        sha256=_json_tag(tags, "qscore.sha256"),
        metrics=_json_tag(tags, "qscore.metrics"),
        data_fingerprint=tags.get("qscore.data_fingerprint", ""),
        git_commit=tags.get("qscore.git_commit", ""),
        description=model_version.description or "",
        class_output=tags.get("qscore.predicted_class_output", ""),
    )


@dataclass(frozen=True)
class ModelState:
    """Everything the registry knows about one model, as of one read."""

    name: str
    versions: list[VersionInfo]
    aliases: dict[str, str]  # alias -> version
    flight: FlightInfo | None
    events: list[Event]

    def version(self, number: str) -> VersionInfo:
        for info in self.versions:
            if info.version == number:
                return info
        known = ", ".join(info.version for info in self.versions) or "none"
        raise UnknownVersion(f"model {self.name!r} has no version {number!r}; registered: {known}")

    def aliases_of(self, number: str) -> list[str]:
        return sorted(alias for alias, version in self.aliases.items() if version == number)

    def served_versions(self) -> list[str]:
        """Versions a release must ship: every aliased one and the flighted one, oldest first."""
        wanted = set(self.aliases.values())
        if self.flight is not None:
            wanted.add(self.flight.version)
        return sorted(wanted, key=int)

    def last_change(self, alias: str) -> Event | None:
        """The latest event that moved `alias` (promote/rollback move production and previous)."""
        moving = {"production": ("promote", "rollback"), "previous": ("promote", "rollback")}
        actions = moving.get(alias, (f"flight-{alias}",))
        return next((event for event in reversed(self.events) if event.action in actions), None)
