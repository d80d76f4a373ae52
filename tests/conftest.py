"""Shared fixtures live in tests/fixtures/, one module per real part they start."""

pytest_plugins = [
    "tests.fixtures.ports",
    "tests.fixtures.triton",
    "tests.fixtures.bus",
    "tests.fixtures.producer",
    "tests.fixtures.telemetry",
    "tests.fixtures.durable",
    "tests.fixtures.entra",
    "tests.fixtures.worker",
    "tests.fixtures.mlflow_registry",
    "tests.fixtures.azurite",
]
