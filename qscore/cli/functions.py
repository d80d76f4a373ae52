"""`qscore functions ...` commands (placeholder until its issue lands)."""

import typer

app = typer.Typer(help="functions commands", no_args_is_help=True)
