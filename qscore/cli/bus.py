"""`qscore bus ...` commands (placeholder until its issue lands)."""

import typer

app = typer.Typer(help="bus commands", no_args_is_help=True)
