"""Shape checks for the Prometheus Operator kinds in deploy/ (PodMonitor, PrometheusRule).

They are CRDs and no schema of them is vendored (deploy/schemas holds only KEDA's), so these
JSON Schemas are written here from the monitoring.coreos.com/v1 API reference, covering the
fields qscore uses, strict (an unknown or misspelt field is an error). A field the project
starts to use must be added here; the PromQL inside a rule is checked by promtool
(tests/test_monitoring_rules.py), not here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

API_GROUP = "monitoring.coreos.com/"

_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STRINGS,
                   "annotations": _STRINGS},
    "additionalProperties": False,
}  # fmt: skip

_POD_METRICS_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
    },
    "required": ["port"],
    "additionalProperties": False,
}

POD_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": _STRINGS},
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                },
                "namespaceSelector": {"type": "object"},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _POD_METRICS_ENDPOINT},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

_RULE = {
    "type": "object",
    "properties": {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
        "expr": {"type": "string", "minLength": 1},
        "for": _DURATION,
        "labels": _STRINGS,
        "annotations": _STRINGS,
    },
    "required": ["expr"],
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "additionalProperties": False,
}

PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": _DURATION,
                            "rules": {"type": "array", "minItems": 1, "items": _RULE},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SCHEMAS = {"PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}


@cache
def _validator(kind: str) -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(SCHEMAS[kind])


def validate_monitoring(docs: list[dict[str, Any]]) -> list[str]:
    """Every monitoring.coreos.com document against its schema above; one line per failure."""
    errors = []
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith(API_GROUP):
            continue
        kind = str(doc.get("kind"))
        name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
        if kind not in SCHEMAS:
            errors.append(f"{name}: no schema for monitoring kind {kind}")
            continue
        for error in _validator(kind).iter_errors(doc):
            path = "/".join(str(p) for p in error.absolute_path)
            errors.append(f"{name}: {error.message} (at {path or '/'})")
    return errors
