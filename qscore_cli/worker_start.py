"""Start a worker from CLI flags and `QSCORE_*` variables, without Typer: `qscore worker` with
no arguments comes straight here (qscore_cli.main), so a starting worker imports only what it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from workers.settings import WorkerSettings


def run_from_env() -> None:
    """`qscore worker` with every setting from its `QSCORE_*` variable (the flags' defaults)."""
    _run(_settings({}, no_health=False), "INFO")


def _settings(overrides: dict[str, Any], *, no_health: bool) -> WorkerSettings:
    """Flags over `QSCORE_*` variables over defaults; bad values become one-line errors."""
    import dataclasses

    from qscore.transport import TransportConfigError, check_connection_string
    from workers.settings import WorkerSettings

    try:
        settings = WorkerSettings.from_env(**overrides)
        if no_health:
            settings = dataclasses.replace(settings, health_port=None)
        if bool(settings.servicebus_connection) == bool(settings.servicebus_namespace):
            raise TransportConfigError(
                "set exactly one of --connection/QSCORE_SERVICEBUS_CONNECTION "
                "or --namespace/QSCORE_SERVICEBUS_NAMESPACE"
            )
        if settings.servicebus_connection:
            check_connection_string(settings.servicebus_connection)
    except (ValueError, TransportConfigError) as exc:
        raise UserError(str(exc)) from None
    return settings


def _run(settings: WorkerSettings, log_level: str) -> None:
    import asyncio
    import logging

    from qscore.settings import SettingsError
    from qscore.telemetry import configure
    from workers.app import run_worker

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # The SDK logs every link event at INFO; a worker's own log should stay readable.
    logging.getLogger("azure").setLevel(logging.WARNING)
    configure("qscore-worker", prometheus=settings.health_port is not None)
    try:
        asyncio.run(run_worker(settings))
    except OSError as exc:  # e.g. the health port is taken
        raise UserError(f"worker could not start: {exc}") from None
    except SettingsError as exc:  # e.g. QSCORE_MIDDLEWARE names nothing importable
        raise UserError(str(exc)) from None
