"""One settings mechanism for every settings object: frozen dataclasses filled from variables.

A settings class stays a plain frozen, keyword-only dataclass (constructing it in code reads no
environment); `settings_from_env` fills it from `QSCORE_*` variables. Each field's annotation is
its type: values are parsed by pydantic (`TypeAdapter.validate_strings`), so `QSCORE_X=ture` is
an error naming the variable, never a silent False. Tuples take comma-separated values. Defaults
that several settings objects share are defined here, once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

DEFAULT_REQUEST_QUEUE = "scoring-requests"
DEFAULT_REPLY_QUEUE = "scoring-replies"
DEFAULT_TRITON_URL = "127.0.0.1:8001"

# Variables shared by every part (worker, producer, Functions app, batch): one name each.
SHARED_VARIABLES: dict[str, str] = {
    "servicebus_connection": "QSCORE_SERVICEBUS_CONNECTION",
    "servicebus_namespace": "QSCORE_SERVICEBUS_NAMESPACE",
    "request_queue": "QSCORE_REQUEST_QUEUE",
    "reply_queue": "QSCORE_REPLY_QUEUE",
    "triton_url": "QSCORE_TRITON_URL",
}

_NONE_WORDS = frozenset({"none", "off"})

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting that cannot be used: one line naming the variable, the value and what it wants."""


def settings_from_env(
    cls: type[T],
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = "QSCORE_",
    variables: Mapping[str, str | Sequence[str]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """An instance of the dataclass `cls` from variables; `overrides` (CLI flags) win, None = not given.

    A field reads `variables[field]` (a name, or names tried in order) when given, else
    `prefix + FIELD`. Empty variables count as unset.
    """
    env = os.environ if environ is None else environ
    hints = _hints(typing.cast(Any, cls))
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not spec.init:
            continue
        names = _names(spec.name, prefix, variables)
        found = next(((name, env[name]) for name in names if env.get(name)), None)
        if found is not None:
            values[spec.name] = parse_setting(found[0], hints[spec.name], found[1])
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {exc}") from None


def parse_setting(variable: str, annotation: Any, raw: str) -> Any:
    """`raw` as the annotated type, or SettingsError naming `variable`."""
    if _is_optional(annotation) and raw.strip().lower() in _NONE_WORDS:
        return None
    inner = _without_none(annotation)
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0] if typing.get_args(inner) else str
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        return tuple(parse_setting(variable, item, part) for part in parts)
    try:
        return _adapter(inner).validate_strings(raw.strip())
    except ValidationError as exc:
        wanted = getattr(inner, "__name__", None) or str(inner)
        reason = exc.errors()[0]["msg"] if exc.errors() else "invalid"
        raise SettingsError(f"{variable}={raw!r} is not a valid {wanted}: {reason}") from None


def _names(field: str, prefix: str, variables: Mapping[str, str | Sequence[str]] | None) -> list[str]:
    given = (variables or {}).get(field)
    if given is None:
        return [SHARED_VARIABLES.get(field, f"{prefix}{field.upper()}")]
    return [given] if isinstance(given, str) else list(given)


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _is_optional(annotation: Any) -> bool:
    return _is_union(annotation) and type(None) in typing.get_args(annotation)


def _without_none(annotation: Any) -> Any:
    if not _is_union(annotation):
        return annotation
    rest = tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
