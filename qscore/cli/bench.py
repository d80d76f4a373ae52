"""`qscore bench` command (placeholder until its issue lands)."""

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    del app
