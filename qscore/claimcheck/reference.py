"""The claim-check message: a small reference to a request (or reply) body kept in Blob Storage.

A body over the producer's threshold travels as a blob; the message carries
`application/vnd.qscore.claim-check.v1+json` and this document instead:

    {"schema_version": "1",
     "claim_check": {"container": "qscore-claims", "blob": "requests/<id>", "size": 5600000,
                     "sha256": "<64 hex>", "content_type": "application/vnd.qscore.request.v1+json"},
     "model": "digit_images"}

`model` (requests only) lets the worker apply the model's size limit before downloading.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CLAIM_CHECK_CONTENT_TYPE = "application/vnd.qscore.claim-check.v1+json"


class ClaimCheck(BaseModel):
    """Where the body is and what it must be: its size and SHA-256 are checked after download."""

    model_config = ConfigDict(extra="forbid")

    container: str = Field(min_length=3, max_length=63)
    blob: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str = Field(min_length=1)


class ClaimReference(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal["1"] = "1"
    claim_check: ClaimCheck
    model: str | None = None

    def body(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class MalformedReference(ValueError):
    """A claim-check body that is not a valid reference (one line for a person)."""


def parse_reference(body: bytes) -> ClaimReference:
    try:
        return ClaimReference.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise MalformedReference(f"{where}: {first['msg']}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
