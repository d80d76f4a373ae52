"""Where claim-checked bodies are kept, and when a body goes by reference.

Locally a connection string (`QSCORE_BLOB_CONNECTION`, Azurite's); in Azure the account URL
(`QSCORE_BLOB_ACCOUNT_URL`) with `DefaultAzureCredential` (workload identity, Storage Blob Data
roles on the container). Neither set: claim-check is off (bodies travel inline or are refused).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from qscore.blob_clients import BLOB_CONNECTION_ENV

BLOB_ACCOUNT_URL_ENV = "QSCORE_BLOB_ACCOUNT_URL"
CONTAINER_ENV = "QSCORE_CLAIM_CHECK_CONTAINER"
THRESHOLD_ENV = "QSCORE_CLAIM_CHECK_THRESHOLD_BYTES"
MAX_BYTES_ENV = "QSCORE_CLAIM_CHECK_MAX_BYTES"
DEFAULT_CONTAINER = "qscore-claims"
# Well under Service Bus Standard's 256 KB message limit, leaving room for properties.
DEFAULT_THRESHOLD_BYTES = 192 * 1024
# The largest body a worker downloads when the model's config sets no `qscore.max_request_bytes`.
DEFAULT_MAX_BYTES = 16 << 20


@dataclass(frozen=True, kw_only=True)
class ClaimCheckSettings:
    connection: str | None = None
    account_url: str | None = None
    container: str = DEFAULT_CONTAINER
    threshold_bytes: int = DEFAULT_THRESHOLD_BYTES
    max_bytes: int = DEFAULT_MAX_BYTES
    # Storage calls fail fast (the caller abandons and retries) instead of the SDK's long retries.
    retry_total: int = 2
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not (self.connection or self.account_url):
            raise ValueError(f"claim-check needs {BLOB_CONNECTION_ENV} or {BLOB_ACCOUNT_URL_ENV}")
        if self.threshold_bytes < 1 or self.max_bytes < 1:
            raise ValueError("claim-check threshold and max bytes must be >= 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClaimCheckSettings | None:
        """The settings from `QSCORE_*` variables; None when no Blob account is configured."""
        env = os.environ if environ is None else environ
        connection, account_url = env.get(BLOB_CONNECTION_ENV), env.get(BLOB_ACCOUNT_URL_ENV)
        if not (connection or account_url):
            return None
        return cls(
            connection=connection or None,
            account_url=account_url or None,
            container=env.get(CONTAINER_ENV, DEFAULT_CONTAINER),
            threshold_bytes=int(env.get(THRESHOLD_ENV, DEFAULT_THRESHOLD_BYTES)),
            max_bytes=int(env.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
        )
