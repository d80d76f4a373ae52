"""QSCORE_WORKER_MIDDLEWARE: middleware a deployed worker loads by name, no code edits.

The value is comma-separated `package.module:factory` entries; each factory (a Middleware
subclass, or a function) is called with no arguments and must return a `Middleware`. Anything
else is one SettingsError line naming the variable, raised before the worker starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from qscore.settings import SettingsError
from workers.middleware.base import Middleware

VARIABLE = "QSCORE_WORKER_MIDDLEWARE"


def check_reference(reference: str) -> None:
    """ValueError naming the variable unless `reference` reads `package.module:factory`."""
    module, colon, name = reference.partition(":")
    if not colon or not module.strip() or not name.strip() or not name.strip().isidentifier():
        raise ValueError(f"{VARIABLE}={reference!r} is not package.module:factory")


def load_middleware(references: Sequence[str]) -> list[Middleware]:
    """One Middleware per `package.module:factory` reference, in order."""
    return [_load(reference) for reference in references]


def _load(reference: str) -> Middleware:
    try:
        check_reference(reference)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    module_name, _, name = (part.strip() for part in reference.partition(":"))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SettingsError(f"{VARIABLE}={reference!r}: cannot import {module_name}: {exc!r}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise SettingsError(f"{VARIABLE}={reference!r}: {module_name} has no callable {name}") from None
    try:
        made = factory()
    except Exception as exc:
        raise SettingsError(f"{VARIABLE}={reference!r}: {name}() failed: {exc!r}") from None
    if not isinstance(made, Middleware):
        raise SettingsError(
            f"{VARIABLE}={reference!r}: {name}() returned {type(made).__name__}, "
            "not a workers.middleware.Middleware"
        )
    return made
