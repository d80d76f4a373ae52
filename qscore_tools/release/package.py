"""`qscore release package`: materialise what the registry says into deployable files.

Output (`DIR`):
- `DIR/triton_repo/<model>/config.pbtxt` and `DIR/triton_repo/<model>/<version>/...`: every
  version that has an alias or a flight, in folders named by the MLflow version number (Triton
  wants integer version folders); the config is production's with `version_policy` set to
  exactly those versions.
- `DIR/registry.json`: the routing table workers read (`QSCORE_REGISTRY_PATH`, the
  `qscore-model-registry` ConfigMap): production, other aliases as labels, the flight.
- `DIR/release.json`: what went in, with the SHA-256 of every file.

Nothing time- or machine-dependent is written, so the same registry state gives the same bytes.
A package written over an older one replaces it; the routing table is renamed into place last,
so a worker reloading it never sees a table naming versions the repository lacks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qscore.registry.catalog import PRODUCTION, ModelCatalog
from qscore.registry.catalog_types import FLIGHT_ALIASES, ModelState
from qscore.registry.signature import CONFIG_NAME, read_model_config, sha256_file
from qscore.registry.store import Flight, ModelEntry, RegistryDocument

REPOSITORY_DIR = "triton_repo"
ROUTING_TABLE = "registry.json"
MANIFEST = "release.json"


class ReleaseError(Exception):
    """The registry state cannot be packaged (a file's digest differs from the one registered)."""


@dataclass(frozen=True)
class ReleasePackage:
    output: Path
    versions: dict[str, list[str]]  # model -> packaged versions

    @property
    def repository(self) -> Path:
        return self.output / REPOSITORY_DIR

    @property
    def routing_table(self) -> Path:
        return self.output / ROUTING_TABLE


def package_release(catalog: ModelCatalog, output: Path) -> ReleasePackage:
    """Write the package for the registry's current state into `output`."""
    states = [catalog.state(name) for name in catalog.models()]
    states = [state for state in states if state.served_versions()]
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".release-", dir=output) as scratch_name:
        scratch = Path(scratch_name)
        repository = scratch / REPOSITORY_DIR
        manifest: dict[str, Any] = {"models": {}}
        for state in states:
            manifest["models"][state.name] = _package_model(catalog, state, repository, scratch / "dl")
        routing = _routing_table(states)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (scratch / ROUTING_TABLE).write_text(routing)
        _swap_in(scratch, output)
    return ReleasePackage(output, {state.name: state.served_versions() for state in states})


def _package_model(
    catalog: ModelCatalog, state: ModelState, repository: Path, downloads: Path
) -> dict[str, Any]:
    versions = state.served_versions()
    config_version = state.aliases.get(PRODUCTION, versions[-1])
    model_dir = repository / state.name
    entries: dict[str, Any] = {}
    for version in versions:
        fetched = catalog.download(state.name, version, downloads / f"{state.name}-{version}")
        _check_digests(state, version, fetched)
        for source in sorted(fetched.rglob("*")):
            relative = source.relative_to(fetched)
            if source.is_file() and relative.as_posix() != CONFIG_NAME:
                target = model_dir / version / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        if version == config_version:
            _write_config(fetched / CONFIG_NAME, model_dir / CONFIG_NAME, state.name, versions)
        entries[version] = {"aliases": state.aliases_of(version), "sha256": state.version(version).sha256}
    return {"config_from": config_version, "versions": entries}


def _check_digests(state: ModelState, version: str, folder: Path) -> None:
    expected = state.version(version).sha256
    actual = {
        path.relative_to(folder).as_posix(): sha256_file(path) for path in folder.rglob("*") if path.is_file()
    }
    if expected and actual != expected:
        raise ReleaseError(
            f"{state.name} version {version}: files in the registry differ from the SHA-256 recorded "
            "when it was registered; register it again"
        )


def _write_config(source: Path, target: Path, name: str, versions: list[str]) -> None:
    from google.protobuf import text_format

    config = read_model_config(source)
    config.name = name
    config.version_policy.specific.versions[:] = [int(version) for version in versions]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text_format.MessageToString(config))


def _routing_table(states: list[ModelState]) -> str:
    document = RegistryDocument()
    for state in states:
        labels = {
            alias: version
            for alias, version in state.aliases.items()
            if alias != PRODUCTION and alias not in FLIGHT_ALIASES
        }
        flight = state.flight
        document.models[state.name] = ModelEntry(
            production=state.aliases.get(PRODUCTION),
            labels=dict(sorted(labels.items())),
            flight=Flight(mode=flight.mode, version=flight.version, weight=flight.weight) if flight else None,
        )
    return json.dumps(document.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def _swap_in(scratch: Path, output: Path) -> None:
    """Repository first, manifest, then the routing table (an atomic rename) last."""
    new_repository, old_repository = scratch / REPOSITORY_DIR, output / REPOSITORY_DIR
    if old_repository.exists():
        retired = scratch / "retired"
        os.replace(old_repository, retired)
    if new_repository.exists():
        os.replace(new_repository, old_repository)
    os.replace(scratch / MANIFEST, output / MANIFEST)
    os.replace(scratch / ROUTING_TABLE, output / ROUTING_TABLE)
