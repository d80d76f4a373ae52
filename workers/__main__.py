"""`python -m workers`: run one worker with settings from `QSCORE_*` variables."""

from __future__ import annotations

import asyncio
import logging
import sys

from qscore.settings import SettingsError
from workers.app import run_worker
from workers.settings import WorkerSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings = WorkerSettings.from_env()
        from qscore.telemetry import configure

        configure("qscore-worker", prometheus=settings.health_port is not None)
        asyncio.run(run_worker(settings))
    except SettingsError as exc:  # a bad QSCORE_* value: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
