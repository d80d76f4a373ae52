"""Model registry: production tag, promotion, rollback and flights (canary/shadow)."""

from qscore.registry.store import Flight, ModelRegistry, RegistryError, Route, routing_fraction
from qscore.registry.versions import check_version, default_repository, local_versions

__all__ = [
    "Flight",
    "ModelRegistry",
    "RegistryError",
    "Route",
    "check_version",
    "default_repository",
    "local_versions",
    "routing_fraction",
]
