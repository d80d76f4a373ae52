"""Read scoring requests that people write by hand: a JSON file of one request or a list."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from qscore.contracts import ScoreRequest
from qscore.producer.requests import OutgoingRequest, new_request_id


class RequestFileError(ValueError):
    """The file is missing, not JSON, or not request bodies; the message says where."""


def load_request_file(path: Path) -> list[ScoreRequest]:
    """Request bodies from `path`: one ScoreRequest document, or a JSON list of them."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RequestFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestFileError(f"{path} is not JSON: {exc}") from None
    entries = document if isinstance(document, list) else [document]
    if not entries:
        raise RequestFileError(f"{path} holds an empty list; it needs at least one request")
    requests = []
    for index, entry in enumerate(entries):
        try:
            requests.append(ScoreRequest.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            prefix = f"request {index}: " if isinstance(document, list) else ""
            raise RequestFileError(f"{path}: {prefix}{where}: {first['msg']}") from None
    return requests


def repeat_requests(bodies: list[ScoreRequest], count: int) -> list[OutgoingRequest]:
    """`count` requests cycling through `bodies`, each with a fresh request id."""
    return [OutgoingRequest(new_request_id(), bodies[index % len(bodies)]) for index in range(count)]
