"""QSCORE_MIDDLEWARE: middleware a deployment loads by name, no code edits; both runtimes read it.

The value is comma-separated `package.module:factory` entries; each factory (a Middleware
subclass, or a function) is called with no arguments and must return a `Middleware`. Anything
else is one SettingsError line naming the variable, raised before the runtime starts.
QSCORE_WORKER_MIDDLEWARE, the worker's name for it before the Functions app ran middleware,
is read when QSCORE_MIDDLEWARE is unset (deprecated).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence

from qscore.middleware.base import Middleware
from qscore.settings import SettingsError

VARIABLE = "QSCORE_MIDDLEWARE"
DEPRECATED_VARIABLE = "QSCORE_WORKER_MIDDLEWARE"
VARIABLES = (VARIABLE, DEPRECATED_VARIABLE)  # tried in this order


def variable_in_use(environ: Mapping[str, str] | None = None) -> str:
    """The variable the deployment set (QSCORE_MIDDLEWARE first), for messages that name it."""
    env = os.environ if environ is None else environ
    return next((name for name in VARIABLES if env.get(name)), VARIABLE)


def references_in(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The `package.module:factory` references the variable in use lists."""
    env = os.environ if environ is None else environ
    raw = env.get(variable_in_use(env), "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def check_reference(reference: str, variable: str | None = None) -> None:
    """ValueError naming the variable unless `reference` reads `package.module:factory`."""
    module, colon, name = reference.partition(":")
    if not colon or not module.strip() or not name.strip() or not name.strip().isidentifier():
        raise ValueError(f"{variable or variable_in_use()}={reference!r} is not package.module:factory")


def load_middleware(references: Sequence[str], variable: str | None = None) -> list[Middleware]:
    """One Middleware per `package.module:factory` reference, in order."""
    return [_load(reference, variable or variable_in_use()) for reference in references]


def _load(reference: str, variable: str) -> Middleware:
    try:
        check_reference(reference, variable)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    module_name, _, name = (part.strip() for part in reference.partition(":"))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SettingsError(f"{variable}={reference!r}: cannot import {module_name}: {exc!r}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise SettingsError(f"{variable}={reference!r}: {module_name} has no callable {name}") from None
    try:
        made = factory()
    except Exception as exc:
        raise SettingsError(f"{variable}={reference!r}: {name}() failed: {exc!r}") from None
    if not isinstance(made, Middleware):
        raise SettingsError(
            f"{variable}={reference!r}: {name}() returned {type(made).__name__}, "
            "not a qscore.middleware.Middleware"
        )
    return made
