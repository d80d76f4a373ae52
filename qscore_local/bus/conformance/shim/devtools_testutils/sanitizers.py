"""Recording sanitizers: no-ops, nothing is recorded against the local endpoint."""

from typing import Any


def add_remove_header_sanitizer(**kwargs: Any) -> None:
    return None


def add_general_regex_sanitizer(**kwargs: Any) -> None:
    return None


def add_oauth_response_sanitizer(**kwargs: Any) -> None:
    return None
