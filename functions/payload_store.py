"""Pass-by-reference for large orchestration payloads.

Locally (and in tests) the store is a folder; in Azure, point `QSCORE_FUNCTIONS_PAYLOAD_DIR` at a
mounted Azure Files share, or add a blob implementation of `PayloadStore` (same two methods).
References are content hashes, so storing the same batch twice (a redelivery) writes one file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from functions.payloads import Carried


class PayloadStore(Protocol):
    async def put(self, data: bytes) -> str: ...

    async def get(self, ref: str) -> bytes: ...


class PayloadMissing(Exception):
    """A reference that the store does not hold (expired, or another store)."""


class FilePayloadStore:
    """Content-addressed files under `root` (writes are atomic: temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self._put_sync, data)

    async def get(self, ref: str) -> bytes:
        return await asyncio.to_thread(self._get_sync, ref)

    def _path(self, ref: str) -> Path:
        if not ref.startswith("sha256-") or not ref[7:].isalnum():
            raise PayloadMissing(f"not a payload reference: {ref!r}")
        return self.root / ref

    def _put_sync(self, data: bytes) -> str:
        ref = "sha256-" + hashlib.sha256(data).hexdigest()
        target = self._path(ref)
        if target.exists():
            return ref
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, target)
        return ref

    def _get_sync(self, ref: str) -> bytes:
        try:
            return self._path(ref).read_bytes()
        except FileNotFoundError:
            raise PayloadMissing(f"payload {ref} is not in {self.root}") from None


async def carry(document: str, store: PayloadStore, *, inline_limit_bytes: int) -> Carried:
    """By value when small enough for the Durable history, by reference otherwise."""
    data = document.encode("utf-8")
    if len(data) <= inline_limit_bytes:
        return Carried(inline=document, size_bytes=len(data))
    return Carried(ref=await store.put(data), size_bytes=len(data))


async def unpack(carried: Carried, store: PayloadStore) -> str:
    if carried.inline is not None:
        return carried.inline
    if carried.ref is None:
        raise PayloadMissing("a carried payload has neither a value nor a reference")
    return (await store.get(carried.ref)).decode("utf-8")
