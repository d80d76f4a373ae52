"""RFC 9457 problem details for the HTTP API."""

from __future__ import annotations

import json

import azure.functions as func

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://qscore.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    """`type` names the stable error code, so a client can branch on it without parsing `detail`."""
    document: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        document["instance"] = instance
    return func.HttpResponse(
        json.dumps(document),
        status_code=status,
        headers={**(headers or {}), "Content-Type": PROBLEM_CONTENT_TYPE},
    )
