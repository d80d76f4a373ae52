"""Model registry: production tag, promotion, rollback and flights (canary/shadow)."""

from qscore.registry.store import Flight, ModelRegistry, RegistryError, Route, routing_fraction

__all__ = ["Flight", "ModelRegistry", "RegistryError", "Route", "routing_fraction"]
