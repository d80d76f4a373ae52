"""`qscore registry ...` commands (placeholder until its issue lands)."""

import typer

app = typer.Typer(help="registry commands", no_args_is_help=True)
