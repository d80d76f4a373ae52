"""The interaction log in Blob Storage: batched JSONL blobs, partitioned like Azure ML's data collector.

`BlobInteractionLog` takes records exactly like the file log (`InteractionLog`: bounded queue,
built and written on its own thread, dropped and counted when full, never waiting on storage)
and uploads each batch as new blobs, one per (model, version, hour):

    <container>/<prefix>/<model>/<version>/YYYY/MM/DD/HH/<writer>-<sequence>.jsonl

Blobs are never appended to, so writers (pods) never contend and a pod's death loses at most the
batch in memory. The target is a URL: `https://<account>.blob.core.windows.net/<container>[/<prefix>]`
or Azurite's `http://127.0.0.1:<port>/devstoreaccount1/<container>[/<prefix>]`; the account is
reached with `QSCORE_BLOB_CONNECTION` when set, else DefaultAzureCredential.
`read_blob_records(url)` reads a log back (oldest first) for `qscore model drift --source`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qscore.monitoring.interaction_log import InteractionLog, RecordSource, _Stop
from qscore.monitoring.records import InteractionRecord

logger = logging.getLogger(__name__)

INTERACTION_LOG_URL_ENV = "QSCORE_INTERACTION_LOG_URL"
BLOB_CONNECTION_ENV = "QSCORE_BLOB_CONNECTION"
DEFAULT_FLUSH_INTERVAL_S = 5.0


@dataclass(frozen=True)
class LogLocation:
    account_url: str
    container: str
    prefix: str  # "" or "a/b/" (always ending in "/")


def parse_log_url(url: str) -> LogLocation:
    """Container and prefix from an Azure (host style) or Azurite (path style) Blob URL."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment]
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname and parts.hostname.endswith(".blob.core.windows.net"):
        account_url, rest = base, segments
    else:
        account_url, rest = f"{base}/{segments[0]}" if segments else base, segments[1:]
    if parts.scheme not in ("http", "https") or not rest:
        raise ValueError(f"{url}: an interaction log URL names at least a container")
    prefix = "/".join(rest[1:])
    return LogLocation(account_url, rest[0], prefix + "/" if prefix else "")


def _sync_container(location: LogLocation) -> Any:
    from azure.storage.blob import BlobServiceClient, LinearRetry

    retry = LinearRetry(backoff=1, retry_total=3, random_jitter_range=1)  # the SDK's default waits 15 s+
    connection = os.environ.get(BLOB_CONNECTION_ENV)
    if connection:
        service = BlobServiceClient.from_connection_string(connection, retry_policy=retry)
    else:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(
            location.account_url, credential=DefaultAzureCredential(), retry_policy=retry
        )
    return service.get_container_client(location.container)


def partition(record: InteractionRecord) -> str:
    """`<model>/<version>/YYYY/MM/DD/HH` of a record (UTC), the data collector's layout."""
    stamp = datetime.fromtimestamp(record.at, UTC)
    return f"{record.model}/{record.version or 'unversioned'}/{stamp:%Y/%m/%d/%H}"


class BlobInteractionLog(InteractionLog):
    """The interaction log as batched blobs; same API and counters as the file log."""

    def __init__(
        self,
        url: str,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        max_pending: int = 10_000,
        write_batch: int = 512,
        class_outputs: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.location = parse_log_url(url)
        self.flush_interval_s = flush_interval_s
        self.uploaded_blobs = 0
        self._writer_id = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        self._sequence = 0
        self._container: Any = None
        # The base class starts the writer thread (our `_run`) at the end of its __init__.
        super().__init__(
            Path(self.location.container),
            max_pending=max_pending,
            write_batch=write_batch,
            class_outputs=class_outputs,
        )

    def _run(self) -> None:
        self._container = _sync_container(self.location)
        with contextlib.suppress(Exception):  # exists already, or no right to create it
            self._container.create_container()
        try:
            stop = False
            while not stop:
                batch = self._take_batch()
                stop = any(isinstance(entry, _Stop) for entry in batch)
                self._upload(batch)
        finally:
            self._container.close()

    def _take_batch(self) -> list[RecordSource | threading.Event | _Stop]:
        """Up to `write_batch` entries, waiting at most the flush interval after the first."""
        batch: list[RecordSource | threading.Event | _Stop] = [self._queue.get()]
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self._write_batch and not isinstance(batch[-1], threading.Event | _Stop):
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _upload(self, batch: list[RecordSource | threading.Event | _Stop]) -> None:
        parts: dict[str, list[str]] = defaultdict(list)
        for entry in batch:
            if isinstance(entry, threading.Event | _Stop):
                continue
            try:
                record = entry if isinstance(entry, InteractionRecord) else entry()
                parts[partition(record)].append(record.model_dump_json() + "\n")
            except Exception:  # one bad record must not stop the log
                self.failed += 1
                logger.exception("interaction record could not be built")
        for where, lines in parts.items():
            self._sequence += 1
            name = f"{self.location.prefix}{where}/{self._writer_id}-{self._sequence:06d}.jsonl"
            try:
                self._container.upload_blob(name, "".join(lines).encode(), overwrite=True)
                self.written += len(lines)
                self.uploaded_blobs += 1
            except Exception as exc:  # storage down: these records are lost, counted, and logged
                self.failed += len(lines)
                logger.warning("interaction log upload to %s failed: %s", name, exc)
        for entry in batch:
            if isinstance(entry, threading.Event):
                entry.set()


def read_blob_records(url: str, *, model: str | None = None) -> list[InteractionRecord]:
    """Every record under the URL (or under its `<model>/` partition), oldest first."""
    location = parse_log_url(url)
    container = _sync_container(location)
    prefix = location.prefix + (f"{model}/" if model else "")
    records: list[InteractionRecord] = []
    try:
        for blob in container.list_blobs(name_starts_with=prefix):
            if not blob.name.endswith(".jsonl"):
                continue
            for line in container.download_blob(blob.name).readall().splitlines():
                with contextlib.suppress(ValueError):
                    records.append(InteractionRecord.model_validate(json.loads(line)))
    finally:
        container.close()
    return sorted(records, key=lambda record: record.at)


def download_blob(url: str, directory: Path) -> Path | None:
    """The blob at `url` (`<container>/<path>`, e.g. a feedback file) saved into `directory`
    under its own name; None when there is no such blob. Credentials as for the log."""
    from azure.core.exceptions import ResourceNotFoundError

    location = parse_log_url(url)
    name = location.prefix.rstrip("/")
    if not name:
        raise ValueError(f"{url}: names a container, not a blob")
    container = _sync_container(location)
    try:
        data = container.download_blob(name).readall()
    except ResourceNotFoundError:
        return None
    finally:
        container.close()
    target = directory / Path(name).name
    target.write_bytes(data)
    return target
