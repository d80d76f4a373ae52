"""The interaction log in Blob Storage: batched JSONL blobs, partitioned like Azure ML's data collector.

`BlobInteractionLog` takes records exactly like the file log (`InteractionLog`: bounded queue,
built and written on its own thread, dropped and counted when full, never waiting on storage)
and uploads each batch as new blobs, one per (model, version, hour):

    <container>/<prefix>/<model>/<version>/YYYY/MM/DD/HH/<writer>-<sequence>.jsonl

Blobs are never appended to, so writers (pods) never contend and a pod's death loses at most the
batch in memory. While Blob is down the batches spill to local disk (spill.py) and are uploaded,
in order, when it is back. The target is a URL: `https://<account>.blob.core.windows.net/<container>[/<prefix>]`
or Azurite's `http://127.0.0.1:<port>/devstoreaccount1/<container>[/<prefix>]`; the account is
reached with `QSCORE_BLOB_CONNECTION` when set, else DefaultAzureCredential.
`read_blob_records(url)` reads a log back (oldest first) for `qscore model drift --source`.
"""

from __future__ import annotations

import contextlib
import json
import logging
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

from qscore.blob_clients import DEFAULT_RETRY_TOTAL, blob_service
from qscore.monitoring.interaction_log import InteractionLog, RecordSource, _Stop, count_dropped
from qscore.monitoring.records import InteractionRecord
from qscore.monitoring.spill import SpillDirectory, default_spill_dir, default_spill_max_bytes

logger = logging.getLogger(__name__)

INTERACTION_LOG_URL_ENV = "QSCORE_INTERACTION_LOG_URL"
DEFAULT_FLUSH_INTERVAL_S = 5.0
DEFAULT_RETRY_INITIAL_S = 1.0
DEFAULT_RETRY_MAX_S = 60.0


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


def _sync_container(location: LogLocation, *, retry_total: int = DEFAULT_RETRY_TOTAL) -> Any:
    service = blob_service(location.account_url, retry_total=retry_total, sync=True)
    return service.get_container_client(location.container)


def partition(record: InteractionRecord) -> str:
    """`<model>/<version>/YYYY/MM/DD/HH` of a record (UTC), the data collector's layout."""
    return partition_of(record.model, record.version, record.at)


def partition_of(model: str, version: str, at: float) -> str:
    stamp = datetime.fromtimestamp(at, UTC)
    return f"{model}/{version or 'unversioned'}/{stamp:%Y/%m/%d/%H}"


class BlobInteractionLog(InteractionLog):
    """The interaction log as batched blobs; same API and counters as the file log, plus a
    local-disk spill (spill.py): a batch that cannot be uploaded (Blob down), or that comes while
    the in-memory buffer is backing up, is written to disk and uploaded later, oldest first,
    retrying with exponential backoff. Only what the spill cannot hold is dropped and counted."""

    def __init__(
        self,
        url: str,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        max_pending: int = 10_000,
        write_batch: int = 512,
        class_outputs: Mapping[str, str] | None = None,
        spill_dir: Path | None = None,
        spill_max_bytes: int | None = None,
        retry_initial_s: float = DEFAULT_RETRY_INITIAL_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
    ) -> None:
        self.url = url
        self.location = parse_log_url(url)
        self.flush_interval_s = flush_interval_s
        self.uploaded_blobs = 0
        self.spilled = 0  # records written to the spill (then uploaded from it: `written`)
        limit = spill_max_bytes if spill_max_bytes is not None else default_spill_max_bytes()
        self.spill = SpillDirectory(spill_dir or default_spill_dir(url), max_bytes=limit)
        self._retry_initial_s, self._retry_max_s = retry_initial_s, retry_max_s
        self._retry_delay_s = 0.0
        self._retry_at = 0.0  # time.monotonic() before which Blob is not tried again
        self._high_water = max(1, max_pending // 2)  # queued entries past which batches spill
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

    @property
    def spill_pending(self) -> int:
        """Spilled batches not uploaded yet."""
        return self.spill.count

    def _run(self) -> None:
        self._container = _sync_container(self.location, retry_total=0)  # the spill retries
        with contextlib.suppress(Exception):  # exists already, no right to create it, or Blob down
            self._container.create_container()
        try:
            stop = False
            while not stop:
                batch = self._take_batch()
                stop = any(isinstance(entry, _Stop) for entry in batch)
                self._handle(batch)
        finally:
            self._container.close()

    def _take_batch(self) -> list[RecordSource | threading.Event | _Stop]:
        """Up to `write_batch` entries, waiting at most the flush interval after the first; an
        empty batch when a spilled batch is due for its next upload try."""
        wait_s = max(0.01, self._retry_at - time.monotonic()) if self.spill.count else None
        try:
            batch: list[RecordSource | threading.Event | _Stop] = [self._queue.get(timeout=wait_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self._write_batch and not isinstance(batch[-1], threading.Event | _Stop):
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[RecordSource | threading.Event | _Stop]) -> None:
        # (partition, JSON line); a record that cannot be built is counted and left out
        lines = [
            (partition_of(built.model, built.version, built.at), built.line) for built in self._lines(batch)
        ]
        # A flush or close tries the spill now, whatever the backoff says.
        self._replay(force=any(isinstance(entry, threading.Event | _Stop) for entry in batch))
        if lines:
            backing_up = self._queue.qsize() >= self._high_water
            if self.spill.count or backing_up or time.monotonic() < self._retry_at:
                self._spill([line for _, line in lines])  # after the older ones: order is kept
            else:
                self._upload(lines)
        for entry in batch:
            if isinstance(entry, threading.Event):
                entry.set()

    def _upload(self, lines: list[tuple[str, str]]) -> None:
        parts: dict[str, list[str]] = defaultdict(list)
        for where, line in lines:
            parts[where].append(line)
        unsent: list[str] = []
        for where, part in parts.items():
            if unsent:  # Blob failed on this batch already: spill the rest, do not wait again
                unsent += part
                continue
            self._sequence += 1
            name = f"{self.location.prefix}{where}/{self._writer_id}-{self._sequence:09d}.jsonl"
            try:
                self._put(name, part)
            except Exception as exc:  # storage down: keep these on disk, try again later
                unsent += part
                self._failed(exc)
                continue
            self.written += len(part)
        if unsent:
            self._spill(unsent)

    def _spill(self, lines: list[str]) -> None:
        self._sequence += 1
        refused = self.spill.write(f"{self._writer_id}-{self._sequence:09d}", lines)
        if refused is None:
            self.spilled += len(lines)
            return
        self.dropped += len(lines)
        count_dropped(len(lines), refused)
        logger.warning("interaction log dropped %d records (%s, %s)", len(lines), refused, self.spill.path)

    def _replay(self, *, force: bool) -> None:
        """Upload the spilled batches, oldest first, deleting each once all its blobs are in.
        Blob names come from the file's name, so a batch uploaded twice is not duplicated."""
        if not self.spill.count:
            return
        if not force and (time.monotonic() < self._retry_at or self._queue.qsize() >= self._high_water):
            return
        for file in self.spill.files():
            try:
                lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
            except OSError:  # gone: another process sharing the folder uploaded it
                continue
            parts: dict[str, list[str]] = defaultdict(list)
            for line in lines:
                try:
                    parts[partition(InteractionRecord.model_validate_json(line))].append(line)
                except ValueError:
                    self.failed += 1
            try:
                for where, part in parts.items():
                    self._put(f"{self.location.prefix}{where}/{file.stem}.jsonl", part)
            except Exception as exc:
                self._failed(exc)
                return
            self.spill.remove(file)
            self.written += sum(len(part) for part in parts.values())
        self._retry_delay_s, self._retry_at = 0.0, 0.0

    def _put(self, name: str, lines: list[str]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        data = "".join(lines).encode()
        try:
            self._container.upload_blob(name, data, overwrite=True)
        except ResourceNotFoundError:  # Blob was down when the log started: no container yet
            with contextlib.suppress(Exception):
                self._container.create_container()
            self._container.upload_blob(name, data, overwrite=True)
        self.uploaded_blobs += 1

    def _failed(self, exc: Exception) -> None:
        """Blob refused an upload: back off exponentially before the next try."""
        self._retry_delay_s = min(self._retry_max_s, max(self._retry_initial_s, self._retry_delay_s * 2))
        self._retry_at = time.monotonic() + self._retry_delay_s
        logger.warning(
            "interaction log upload to %s failed, spilling to %s, next try in %.0f s: %s",
            self.url,
            self.spill.path,
            self._retry_delay_s,
            exc,
        )


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
