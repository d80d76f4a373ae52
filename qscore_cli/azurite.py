"""`qscore azurite serve`: Azurite's Blob service on loopback until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import typer

from qscore_cli.errors import UserError

app = typer.Typer(help="Azurite (Azure Blob Storage emulator) on loopback.", no_args_is_help=True)


@app.command("serve")
def serve(
    port: int | None = typer.Option(None, help="Blob port (default: a free one)."),
    location: Path | None = typer.Option(None, help="Data folder (default: a temp folder, removed at exit)."),
) -> None:
    """Run azurite-blob and print its connection string (export it as QSCORE_BLOB_CONNECTION)."""
    import time

    from qscore_local.azurite import AzuriteNotInstalled, AzuriteStartError, LocalAzurite

    azurite = LocalAzurite(port=port, location=location)
    try:
        endpoint = azurite.start()
    except (AzuriteNotInstalled, AzuriteStartError) as exc:
        raise UserError(str(exc)) from None
    typer.echo(f"Azurite Blob at {endpoint.blob_url}")
    typer.echo(f"export QSCORE_BLOB_CONNECTION='{endpoint.connection_string}'")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        azurite.stop()
