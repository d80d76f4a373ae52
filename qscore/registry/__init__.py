"""Model registry.

- `catalog.ModelCatalog`: the source of truth, an MLflow Model Registry (versions, aliases
  production/previous, flights, history), used by `qscore model ...` and the release.
- `store.ModelRegistry`: the routing table the runtimes read on the hot path (production,
  labels, flight per model), written by `qscore release package`.
"""

from qscore.registry.store import Flight, ModelRegistry, RegistryError, Route, routing_fraction

__all__ = [
    "Flight",
    "ModelRegistry",
    "RegistryError",
    "Route",
    "routing_fraction",
]
