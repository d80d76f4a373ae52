"""`qscore release ...`: turn the registry's state into what a deployment ships.

A Typer group: `package` lives here; other release steps (building images) add their own
commands to `app` from their own modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qscore_cli.errors import UserError

app = typer.Typer(
    help="Release: package the registry's models and routing table for deployment.", no_args_is_help=True
)


@app.command()
def package(
    output: Annotated[
        Path, typer.Option("--output", help="Folder to write (replaced if it holds a package).")
    ],
    store: Annotated[str | None, typer.Option("--store", help="MLflow tracking/registry URI.")] = None,
) -> None:
    """Write OUTPUT/triton_repo (every aliased or flighted version) and OUTPUT/registry.json."""
    from qscore.registry.catalog import CatalogError, ModelCatalog
    from qscore_tools.release.package import ReleaseError, package_release

    try:
        built = package_release(ModelCatalog(store), output)
    except (CatalogError, ReleaseError) as exc:
        raise UserError(str(exc)) from None
    if not built.versions:
        raise UserError("the registry has no version with an alias or a flight: promote one first")
    for model, versions in built.versions.items():
        typer.echo(f"{model}: versions {', '.join(versions)}")
    typer.echo(f"model repository {built.repository}, routing table {built.routing_table}")
