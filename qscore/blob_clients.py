"""The one way the core makes Azure Blob clients (claim-check bodies, the interaction log, batch
scoring's input and output): a connection string (QSCORE_BLOB_CONNECTION: Azurite, or a key) or
the account URL with DefaultAzureCredential, always with a short retry policy.

The Storage SDK's default retry waits 15 s and more between attempts: a worker waiting on it
would hold a message's lock for a minute, and a batch job would stall in silence. Here a failed
call is retried `retry_total` times a second apart (with jitter), then raises to the caller,
which has its own recovery (abandon the message, spill the log records, resume the job).
"""

from __future__ import annotations

import os
from typing import Any

BLOB_CONNECTION_ENV = "QSCORE_BLOB_CONNECTION"
DEFAULT_RETRY_TOTAL = 3


def blob_service(
    account_url: str | None,
    *,
    connection: str | None = None,
    retry_total: int = DEFAULT_RETRY_TOTAL,
    timeout_s: float | None = None,
    sync: bool = False,
    connection_from_env: bool = True,
) -> Any:
    """A BlobServiceClient (asyncio unless `sync`): from `connection`, else QSCORE_BLOB_CONNECTION
    (unless not `connection_from_env`: the caller's settings read it already), else `account_url`
    with DefaultAzureCredential. `timeout_s` bounds connecting and each read."""
    options: dict[str, Any] = {}
    if timeout_s is not None:
        options.update(connection_timeout=timeout_s, read_timeout=timeout_s)
    if connection is None and connection_from_env:
        connection = os.environ.get(BLOB_CONNECTION_ENV)
    if sync:
        from azure.storage.blob import BlobServiceClient as SyncService
        from azure.storage.blob import LinearRetry as SyncRetry

        options["retry_policy"] = SyncRetry(backoff=1, retry_total=retry_total, random_jitter_range=1)
        if connection:
            return SyncService.from_connection_string(connection, **options)
        from azure.identity import DefaultAzureCredential

        return SyncService(_account(account_url), credential=DefaultAzureCredential(), **options)
    from azure.storage.blob.aio import BlobServiceClient as AsyncService
    from azure.storage.blob.aio import LinearRetry as AsyncRetry

    options["retry_policy"] = AsyncRetry(backoff=1, retry_total=retry_total, random_jitter_range=1)
    if connection:
        return AsyncService.from_connection_string(connection, **options)
    from azure.identity.aio import DefaultAzureCredential as AsyncCredential

    return AsyncService(_account(account_url), credential=AsyncCredential(), **options)


def _account(account_url: str | None) -> str:
    if account_url is None:
        raise ValueError(f"no Blob account URL, and {BLOB_CONNECTION_ENV} is unset")
    return account_url
