"""The model catalog: versions and their status in an MLflow Model Registry (the source of truth).

Only the public `mlflow` client is used, so the same code talks to a local SQLite store
(`.qscore/mlflow.db`, the default), an MLflow server, or an Azure ML workspace's MLflow
endpoint. How qscore's notions map onto MLflow:

- a version = an MLflow model version whose run holds the files under `model/` (ONNX file(s),
  config.pbtxt, preprocessing/) and whose tags hold the metadata (`qscore.signature`,
  `qscore.sha256`, `qscore.data_fingerprint`, `qscore.git_commit`, `qscore.metrics`);
- production / previous = MLflow aliases; `previous` is the top of the production history (the
  versions each promote replaced, replayed from the events below), so each rollback walks one
  step further back; a flight = the registered-model tag `qscore.flight`
  plus an alias `canary` or `shadow` on the flighted version, so MLflow's UI shows it too;
- who changed what and when = registered-model tags `qscore.event.NNNNNN` (MLflow keeps no
  history of aliases itself).
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from qscore.registry.catalog_types import (
    CatalogError,
    Event,
    FlightInfo,
    ModelState,
    version_from_mlflow,
)
from qscore.registry.signature import (
    CLASS_OUTPUT_PARAMETER,
    ModelArtefacts,
    canonical_json,
    config_parameter,
    read_model_config,
    signature_of,
)

TRACKING_URI_ENV = "QSCORE_MLFLOW_TRACKING_URI"
ACTOR_ENV = "QSCORE_ACTOR"
DEFAULT_STORE_DIR = Path(".qscore")
EXPERIMENT = "qscore-models"
ARTEFACT_PATH = "model"
PRODUCTION = "production"
PREVIOUS = "previous"
FLIGHT_TAG = "qscore.flight"
EVENT_PREFIX = "qscore.event."
MAX_NOTE_CHARS = 1000


def default_tracking_uri() -> str:
    """$QSCORE_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI, else SQLite under ./.qscore/ (no server)."""
    configured = os.environ.get(TRACKING_URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def current_actor() -> str:
    """Who is making a change: $QSCORE_ACTOR, $GITHUB_ACTOR (CI), else the login name."""
    for variable in (ACTOR_ENV, "GITHUB_ACTOR"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _quiet_mlflow() -> None:
    # Store creation logs its migrations at INFO; a CLI's stderr is for errors only.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class ModelCatalog:
    """Register versions, move aliases, start and end flights; read a model's whole state."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        from mlflow import MlflowClient

        _quiet_mlflow()  # after the import: importing mlflow configures its loggers

        self.tracking_uri = tracking_uri or default_tracking_uri()
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # --- reading ---------------------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(model.name for model in self._client.search_registered_models())

    def state(self, name: str) -> ModelState:
        from mlflow.exceptions import MlflowException

        try:
            registered = self._client.get_registered_model(name)
        except MlflowException:
            hint = f"qscore model register DIR --name {name}"
            raise CatalogError(f"model {name!r} is not registered ({hint})") from None
        found = self._client.search_model_versions(f"name='{name}'")
        versions = sorted((version_from_mlflow(v) for v in found), key=lambda v: int(v.version))
        tags = dict(registered.tags)
        events = [Event.from_json(tags[key]) for key in sorted(tags) if key.startswith(EVENT_PREFIX)]
        flight = FlightInfo.from_json(tags[FLIGHT_TAG]) if tags.get(FLIGHT_TAG) else None
        aliases = {alias: str(version) for alias, version in dict(registered.aliases).items()}
        return ModelState(name, versions, aliases, flight, events)

    def download(self, name: str, version: str, destination: Path) -> Path:
        """The files of a version, copied into `destination` (which must not exist yet)."""
        info = self.state(name).version(version)
        local = self._client.download_artifacts(info.run_id, ARTEFACT_PATH, str(destination.parent))
        Path(local).rename(destination)
        return destination

    # --- changing --------------------------------------------------------------------------

    def register(
        self,
        name: str,
        artefacts: ModelArtefacts,
        *,
        metrics: dict[str, float] | None = None,
        data_fingerprint: str = "",
        git_commit: str = "",
        description: str = "",
    ) -> str:
        """A new version of `name` from `artefacts`; returns its number."""
        from mlflow.exceptions import MlflowException

        config = read_model_config(artefacts.config_path)
        if config.name and config.name != name:
            raise CatalogError(f"{artefacts.config_path} names the model {config.name!r}, not {name!r}")
        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)
        run = self._client.create_run(self._experiment_id(), run_name=f"{name}-register")
        with tempfile.TemporaryDirectory(prefix="qscore-register-") as staging:
            _stage(artefacts, Path(staging))
            self._client.log_artifacts(run.info.run_id, staging, ARTEFACT_PATH)
        for key, value in sorted((metrics or {}).items()):
            self._client.log_metric(run.info.run_id, key, float(value))
        self._client.set_terminated(run.info.run_id)
        tags = {
            "qscore.signature": canonical_json(signature_of(config)),
            "qscore.sha256": canonical_json(artefacts.digests()),
            "qscore.metrics": canonical_json(metrics or {}),
            "qscore.data_fingerprint": data_fingerprint,
            "qscore.git_commit": git_commit,
            "qscore.registered_by": current_actor(),
        }
        class_output = config_parameter(config, CLASS_OUTPUT_PARAMETER)
        if class_output:
            tags[CLASS_OUTPUT_PARAMETER] = class_output
        source = f"{run.info.artifact_uri}/{ARTEFACT_PATH}"
        created = self._client.create_model_version(
            name, source, run_id=run.info.run_id, tags=tags, description=description or None
        )
        self._record(name, "register", str(created.version), description)
        return str(created.version)

    def promote(
        self, name: str, version: str, *, allow_signature_change: bool = False, note: str = ""
    ) -> str | None:
        """Alias `production` -> `version`; the old production keeps `previous`. Returns the old one."""
        state = self.state(name)
        candidate = state.version(version)
        current = state.aliases.get(PRODUCTION)
        if current == version:
            raise CatalogError(f"version {version} is already production for {name!r}")
        if current is not None and not allow_signature_change:
            old = state.version(current)
            if old.signature != candidate.signature:
                raise CatalogError(
                    f"version {version} of {name!r} has a different input/output signature from production "
                    f"(version {current}); pass --allow-signature-change if clients are ready for it"
                )
        if state.flight is not None and state.flight.version == version:
            self._clear_flight(name, state.flight)
        self._client.set_registered_model_alias(name, PRODUCTION, version)
        if current is not None:
            self._client.set_registered_model_alias(name, PREVIOUS, current)
        self._record(name, "promote", version, note)
        return current

    def rollback(self, name: str, *, note: str = "") -> tuple[str, str]:
        """Production goes back one step in its history (the version the last promote replaced);
        `previous` becomes the step before that (none when the history is spent). A second
        rollback goes one further back, never to the version rolled back from. Any flight ends.
        Returns (from, to)."""
        state = self.state(name)
        current = state.aliases.get(PRODUCTION)
        history = production_history(state.events)
        if current is None or not history:
            raise CatalogError(f"model {name!r} has no previous production version to roll back to")
        target = history.pop()
        if state.flight is not None:
            self._clear_flight(name, state.flight)
        self._client.set_registered_model_alias(name, PRODUCTION, target)
        if history:
            self._client.set_registered_model_alias(name, PREVIOUS, history[-1])
        elif PREVIOUS in state.aliases:
            self._client.delete_registered_model_alias(name, PREVIOUS)
        self._record(name, "rollback", target, note)
        return current, target

    def start_flight(
        self, name: str, version: str, mode: Literal["canary", "shadow"], weight: float, *, note: str = ""
    ) -> None:
        state = self.state(name)
        state.version(version)
        if state.aliases.get(PRODUCTION) == version:
            raise CatalogError(f"version {version} is production for {name!r}; flight another version")
        if PRODUCTION not in state.aliases:
            raise CatalogError(
                f"model {name!r} has no production version to flight against; promote one first"
            )
        if not 0.0 < weight <= 1.0:
            raise CatalogError(f"a flight's share must be above 0 % and at most 100 %, not {weight:.0%}")
        if state.flight is not None:
            self._clear_flight(name, state.flight)
        flight = FlightInfo(mode=mode, version=version, weight=weight)
        self._client.set_registered_model_tag(name, FLIGHT_TAG, flight.to_json())
        self._client.set_registered_model_alias(name, mode, version)
        self._record(name, f"flight-{mode}", version, f"{weight:.0%} {note}".strip())

    def end_flight(self, name: str, *, note: str = "") -> FlightInfo:
        flight = self.state(name).flight
        if flight is None:
            raise CatalogError(f"model {name!r} has no flight to end")
        self._clear_flight(name, flight)
        self._record(name, "end-flight", flight.version, note)
        return flight

    # --- internals -------------------------------------------------------------------------

    def _clear_flight(self, name: str, flight: FlightInfo) -> None:
        self._client.delete_registered_model_tag(name, FLIGHT_TAG)
        self._client.delete_registered_model_alias(name, flight.mode)

    def _record(self, name: str, action: str, version: str | None, detail: str) -> None:
        tags = self._client.get_registered_model(name).tags
        sequence = 1 + sum(1 for key in tags if key.startswith(EVENT_PREFIX))
        # Tag values are bounded (5000 characters in MLflow's SQL store): keep notes short.
        note = detail[:MAX_NOTE_CHARS]
        event = Event(at=time.time(), by=current_actor(), action=action, version=version, detail=note)
        self._client.set_registered_model_tag(name, f"{EVENT_PREFIX}{sequence:06d}", event.to_json())

    def _experiment_id(self) -> str:
        found = self._client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.tracking_uri.startswith("sqlite:///"):
            # Beside the database, not ./mlruns of whatever folder the command ran in.
            database = Path(self.tracking_uri.removeprefix("sqlite:///"))
            location = (database.parent / "mlflow-artifacts").resolve().as_uri()
        return str(self._client.create_experiment(EXPERIMENT, artifact_location=location))


def production_history(events: list[Event]) -> list[str]:
    """The versions production can roll back to, oldest first, replayed from the events: a
    promote pushes the version it replaced, a rollback pops the version it went back to."""
    history: list[str] = []
    current: str | None = None
    for event in events:
        if event.action == "promote" and event.version is not None:
            if current is not None and current != event.version:
                history.append(current)
            current = event.version
        elif event.action == "rollback" and event.version is not None:
            if event.version in history:  # back to it: it and what came after leave the history
                del history[len(history) - 1 - history[::-1].index(event.version) :]
            current = event.version
    return history


def _stage(artefacts: ModelArtefacts, staging: Path) -> None:
    """The version's files laid out as they are registered (config beside the ONNX files)."""
    for relative, source in artefacts.files.items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
