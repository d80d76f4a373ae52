"""The routing table: which version of each model is `production`, its labels, and its flight.

A flight routes part of the traffic (canary) or a copy of it (shadow) to another version.
The table is one small JSON document (a file locally, a mounted ConfigMap in Kubernetes) that
`qscore release package` writes from the MLflow registry (qscore/registry/catalog.py, the
source of truth); the runtimes only read it (`resolve`, `reload`). The changing methods
(`promote`, `rollback`, `set_flight`) remain for tests and tools that build a table directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from qscore.contracts.messages import PRODUCTION_LABEL

DEFAULT_REGISTRY_PATH = Path(".qscore/registry.json")


class Flight(BaseModel):
    """Canary: `weight` of traffic is scored by `version` instead. Shadow: `version` also scores
    a `weight` share of traffic, its results are logged for comparison and never replied."""

    mode: Literal["canary", "shadow"]
    version: str
    weight: float = Field(ge=0.0, le=1.0)


class RegistryEvent(BaseModel):
    at: datetime
    action: str
    version: str | None = None
    detail: str = ""


class ModelEntry(BaseModel):
    production: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # other named versions, e.g. "staging"
    flight: Flight | None = None
    history: list[RegistryEvent] = Field(default_factory=list)


class RegistryDocument(BaseModel):
    models: dict[str, ModelEntry] = Field(default_factory=dict)


_NO_ENTRY = ModelEntry()  # never handed out: `entry()` gives a fresh one to change


class Route(BaseModel):
    """Where one request goes: the version that answers it, and a shadow version that also scores it."""

    version: str
    shadow_version: str | None = None
    flighted: bool = False


class RegistryError(Exception):
    """A registry request that cannot be honoured (unknown label, nothing to roll back to)."""


def routing_fraction(routing_key: str) -> float:
    """A stable number in [0, 1) per key: the same request id always takes the same route,
    so redelivery of a request does not flip it between versions."""
    digest = hashlib.sha256(routing_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ModelRegistry:
    """Reads and changes a registry document kept at `path`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(os.environ.get("QSCORE_REGISTRY_PATH", DEFAULT_REGISTRY_PATH))
        self._document = self._load()

    def _load(self) -> RegistryDocument:
        if not self.path.exists():
            return RegistryDocument()
        return RegistryDocument.model_validate_json(self.path.read_text())

    def reload(self) -> None:
        self._document = self._load()

    @property
    def document(self) -> RegistryDocument:
        return self._document

    def entry(self, model: str) -> ModelEntry:
        return self._document.models.get(model, ModelEntry())

    def resolve(self, model: str, requested: str | None, *, available: list[str], routing_key: str) -> Route:
        """The version to score `model` with. `requested` is a version number, a label or None
        (= production). Without a production tag the newest available version serves."""
        # Read-only: a model the registry does not list routes as an empty entry would, without
        # building one (this runs once per request).
        entry = self._document.models.get(model, _NO_ENTRY)
        label = requested or PRODUCTION_LABEL
        if label.isdigit():
            if available and label not in available:
                raise RegistryError(f"model {model!r} has no version {label}; available: {available}")
            return Route(version=label)
        if label != PRODUCTION_LABEL:
            if label not in entry.labels:
                raise RegistryError(f"model {model!r} has no label {label!r}")
            return Route(version=entry.labels[label])
        production = entry.production or (max(available, key=int) if available else "")
        if not production:
            raise RegistryError(f"model {model!r} has no production version and no versions available")
        flight = entry.flight
        if flight is None or routing_fraction(routing_key) >= flight.weight:
            return Route(version=production)
        if flight.mode == "canary":
            return Route(version=flight.version, flighted=True)
        return Route(version=production, shadow_version=flight.version)

    def promote(self, model: str, version: str, *, note: str = "") -> ModelEntry:
        """Make `version` production; a running flight of that version ends."""
        entry = self.entry(model)
        entry.production = version
        if entry.flight and entry.flight.version == version:
            entry.flight = None
        return self._record(model, entry, "promote", version, note)

    def rollback(self, model: str, *, note: str = "") -> ModelEntry:
        """Return production to the version it had before the last promotion."""
        entry = self.entry(model)
        promotions = [event.version for event in entry.history if event.action in {"promote", "rollback"}]
        if len(promotions) < 2:
            raise RegistryError(f"model {model!r} has no earlier production version to roll back to")
        previous = promotions[-2]
        entry.production = previous
        entry.flight = None
        return self._record(model, entry, "rollback", previous, note)

    def set_flight(self, model: str, flight: Flight | None, *, note: str = "") -> ModelEntry:
        entry = self.entry(model)
        entry.flight = flight
        action = f"flight-{flight.mode}" if flight else "flight-end"
        return self._record(model, entry, action, flight.version if flight else None, note)

    def _record(
        self, model: str, entry: ModelEntry, action: str, version: str | None, note: str
    ) -> ModelEntry:
        entry.history.append(RegistryEvent(at=datetime.now(UTC), action=action, version=version, detail=note))
        self._document.models[model] = entry
        self._save()
        return entry

    def _save(self) -> None:
        # Write-then-rename so a reader (a worker reloading) never sees half a file.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-")
        with os.fdopen(fd, "w") as handle:
            json.dump(self._document.model_dump(mode="json"), handle, indent=2)
        os.replace(tmp, self.path)
