"""Index a Functions app the way the host does (`get_functions()` + bindings) and adapt its
orchestrators and activities for the local engine, with the worker's own converters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from qscore_local.functions_host.engine import ActivityFn, LocalDurableEngine


def _trigger(function: Any) -> dict[str, Any]:
    return next(
        b for b in json.loads(function.get_function_json())["bindings"] if b["type"].endswith("Trigger")
    )


def indexed_functions(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once: the library refuses to index the same app twice."""
    cached = getattr(app, "_qscore_indexed", None)
    if cached is None:
        cached = list(app.get_functions())
        app._qscore_indexed = cached  # type: ignore[attr-defined]
    return cached


def functions_by_trigger(app: func.FunctionApp, trigger_type: str) -> dict[str, Any]:
    """Function name -> indexed function, for one trigger type (e.g. "activityTrigger")."""
    return {
        str(f.get_function_name()): f for f in indexed_functions(app) if _trigger(f)["type"] == trigger_type
    }


def user_function(app: func.FunctionApp, name: str) -> Callable[..., Any]:
    for function in indexed_functions(app):
        if function.get_function_name() == name:
            return function.get_user_function()
    raise KeyError(f"the app has no function {name!r}")


def _activity(function: Any) -> ActivityFn:
    user_code = function.get_user_function()
    arg_name = _trigger(function)["name"]

    async def invoke(input_json: str | None) -> str:
        value = ActivityTriggerConverter.decode(
            meta.Datum(input_json or "null", "json"), trigger_metadata=None
        )
        result = await user_code(**{arg_name: value})
        return str(ActivityTriggerConverter.encode(result, expected_type=None).value)

    return invoke


def engine_for(app: func.FunctionApp) -> LocalDurableEngine:
    orchestrators = {
        name: f.get_user_function() for name, f in functions_by_trigger(app, "orchestrationTrigger").items()
    }
    activities = {name: _activity(f) for name, f in functions_by_trigger(app, "activityTrigger").items()}
    return LocalDurableEngine(orchestrators, activities)
