"""Canonical JSON and sha256 in one place.

Conventions: a field named ``sha256`` holds bare hex (comparable with ``sha256sum``); a field
named ``digest``/``snapshot``/``spec_digest`` holds ``sha256:<hex>``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20  # 1 MiB reads keep hashlib near its peak throughput


class Hashing:
    """sha256 computed beside the caller's writes: from the second chunk on, a thread hashes
    while the caller writes (hashlib and file writes release the GIL), so storing a large
    artifact costs about the slower of the two, not their sum; a small one never starts the
    thread. Use as a context manager (the thread always ends)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.chunks: queue.Queue[bytes | None] | None = None
        self.thread: threading.Thread | None = None
        self.first = True

    def update(self, chunk: bytes) -> None:
        if self.first:
            self.first = False
            self.h.update(chunk)
            return
        if self.chunks is None:
            self.chunks = queue.Queue(maxsize=16)  # at most 16 chunks ahead: bounded memory
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        self.chunks.put(chunk)

    def _run(self) -> None:
        assert self.chunks is not None
        while (chunk := self.chunks.get()) is not None:
            self.h.update(chunk)

    def _join(self) -> None:
        if self.chunks is not None and self.thread is not None and self.thread.is_alive():
            self.chunks.put(None)
            self.thread.join()

    def hexdigest(self) -> str:
        self._join()
        return self.h.hexdigest()

    def __enter__(self) -> Hashing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._join()


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, no NaN; floats via repr (locale-independent)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def digest_of(obj: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``obj``."""
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def chunks_of(stream: BinaryIO) -> Iterator[bytes]:
    """Everything left in ``stream``, CHUNK bytes at a time."""
    while chunk := stream.read(CHUNK):
        yield chunk


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hex digest and size of everything left in ``stream``."""
    h = hashlib.sha256()
    size = 0
    for chunk in chunks_of(stream):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return sha256_stream(f)


def as_digest(hex_: str) -> str:
    return hex_ if hex_.startswith("sha256:") else "sha256:" + hex_


def hex_of(digest: str) -> str:
    return digest.removeprefix("sha256:")


def short(digest: str, n: int = 12) -> str:
    """The first ``n`` hex digits of a digest (image tags, recipe tags)."""
    return hex_of(digest)[:n]


def shown(digest: str) -> str:
    """A digest as people read it in messages: ``sha256:`` and its first 12 hex digits."""
    return "sha256:" + short(digest)
