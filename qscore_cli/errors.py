"""Errors meant for a person at the terminal: printed as one line, exit code 2."""


class UserError(Exception):
    """Raised by CLI commands for bad input or a missing prerequisite."""
