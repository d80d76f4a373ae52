"""The HTTP API's OpenAPI 3.1 document (functions/openapi.json), built from the contract models
so it cannot drift from them: `python -m functions.openapi --write` regenerates the file, and
tests/test_http_api_auth.py checks the committed one is current and fuzzes the running API
from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qscore.contracts import ScoreReply, ScoreRequest

PATH = Path(__file__).with_name("openapi.json")
REF = "#/components/schemas/{model}"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ScoreRequest, ScoreReply):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is the stable error code.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "instance": {"type": "string"},
        },
    }
    schemas["Accepted"] = {
        "type": "object",
        "required": ["id", "statusQueryGetUri"],
        "properties": {"id": {"type": "string"}, "statusQueryGetUri": {"type": "string"}},
    }
    schemas["Running"] = {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
    }
    return schemas


def document() -> dict[str, Any]:
    refused = {
        "401": _problem("No token, or a token that is invalid, expired, or for another audience or tenant"),
        "503": _problem("The tenant's token keys cannot be fetched, or the app has no auth settings"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qscore scoring API",
            "version": "1",
            "description": "Submit a scoring request and read its reply. Callers present Entra ID access "
            "tokens for the API's app registration; submitting needs the Score.Submit app role, and a "
            "caller reads only the requests it submitted.",
        },
        "security": [{"entra": []}],
        "paths": {
            "/api/score": {
                "post": {
                    "operationId": "submitScore",
                    "parameters": [
                        {
                            "name": "x-request-id",
                            "in": "header",
                            "required": False,
                            "description": "Makes a retried POST idempotent (1-128 printable characters)",
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="ScoreRequest")}}
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted; poll the Location / statusQueryGetUri",
                            "content": {
                                "application/json": {"schema": {"$ref": REF.format(model="Accepted")}}
                            },
                        },
                        "400": _problem("An invalid request or request id"),
                        "403": _problem("The token lacks the Score.Submit app role"),
                        **refused,
                    },
                }
            },
            "/api/score/{id}": {
                "get": {
                    "operationId": "scoreStatus",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The reply",
                            "content": {
                                "application/json": {"schema": {"$ref": REF.format(model="ScoreReply")}}
                            },
                        },
                        "202": {
                            "description": "Still being scored",
                            "content": {
                                "application/json": {"schema": {"$ref": REF.format(model="Running")}}
                            },
                        },
                        "404": _problem("No request with this id submitted by this caller"),
                        "500": _problem("The scoring of this request failed"),
                        **refused,
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"entra": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {PATH.name} (default: print)")
    if parser.parse_args().write:
        PATH.write_text(render())
    else:
        print(render(), end="")


if __name__ == "__main__":
    main()
