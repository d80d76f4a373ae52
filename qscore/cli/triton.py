"""`qscore triton ...` commands (placeholder until its issue lands)."""

import typer

app = typer.Typer(help="triton commands", no_args_is_help=True)
