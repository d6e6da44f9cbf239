"""Content-addressed artifact folder: ``artifacts/ab/cdef...`` named by sha256 hex.

Every write goes to a temp file that is hashed while it is written, fsynced, then renamed to
its address, so a reader never sees a partial artifact and a byte is read once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import StoreError
from ..hashing import CHUNK, hex_of, sha256_file


class DigestMismatch(StoreError):
    def __init__(self, message: str, got: str) -> None:
        super().__init__(message)
        self.got = got


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path(self, digest: str) -> Path:
        h = hex_of(digest)
        return self.root / h[:2] / h[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_file(self, src: Path, limit: int | None = None) -> tuple[str, int]:
        """Copy ``src`` in, hashing in the same pass. Returns (hex, size)."""
        with open(src, "rb") as f:
            return self.put_stream(f, limit=limit, name=str(src))

    def put_bytes(self, data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        if not self.has(h):
            with self._writer() as (out, finish):
                out.write(data)
                finish(h)
        return h

    def put_stream(self, stream: BinaryIO, limit: int | None = None, name: str = "stream",
                   expect: str | None = None) -> tuple[str, int]:
        return self.put_chunks(iter(lambda: stream.read(CHUNK), b""), limit=limit, name=name,
                               expect=expect)

    def put_chunks(self, chunks: Iterable[bytes], limit: int | None = None,
                   name: str = "stream", expect: str | None = None) -> tuple[str, int]:
        """Store the concatenation of ``chunks`` (hashed while written). Returns (hex, size).
        With ``expect``, bytes that hash to anything else are discarded (DigestMismatch)."""
        h = hashlib.sha256()
        size = 0
        with self._writer() as (out, finish):
            for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise StoreError(f"{name}: larger than the limit of {limit} bytes")
                h.update(chunk)
                out.write(chunk)
            if expect is not None and h.hexdigest() != expect:
                raise DigestMismatch(f"{name}: its bytes hash to {h.hexdigest()}, not "
                                     f"{expect}", got=h.hexdigest())
            finish(h.hexdigest())
        return h.hexdigest(), size

    @contextmanager
    def _writer(self) -> Iterator[tuple[BinaryIO, object]]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        # The lock is held until the file is renamed into place: `repro gc` removes only
        # "in-*" files no writer holds (stale_temp_files). The file gets that name only once
        # it is locked, so gc never sees one between its creation and its lock.
        fd, new_name = tempfile.mkstemp(dir=self.tmp, prefix="new-")
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp_name = str(self.tmp / ("in-" + Path(new_name).name[4:]))
        os.rename(new_name, tmp_name)
        target: list[str] = []
        try:
            with os.fdopen(fd, "wb") as out:
                yield out, target.append
                out.flush()
                os.fsync(out.fileno())
                if not target:
                    raise StoreError("artifact write finished without a digest")
                dest = self.path(target[0])
                if dest.exists():
                    os.unlink(tmp_name)
                    return
                dest.parent.mkdir(exist_ok=True)
                os.fchmod(out.fileno(), 0o444)
                os.replace(tmp_name, dest)
        except OSError as e:
            _unlink_quietly(tmp_name)
            raise StoreError(f"cannot write artifact under {self.root}: {e.strerror or e}") from e
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def stale_temp_files(self) -> list[Path]:
        """Temp files of writes that were interrupted: those no live writer holds locked."""
        if not self.tmp.is_dir():
            return []
        stale = []
        for p in self.tmp.glob("in-*"):
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its writer just finished
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a writer is still at it
            finally:
                os.close(fd)
            stale.append(p)
        return stale

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"artifact {digest} is missing from {self.root}") from None

    def verify(self, digest: str) -> bool:
        """True when the stored bytes still hash to their address."""
        p = self.path(digest)
        return p.is_file() and sha256_file(p)[0] == hex_of(digest)

    def copy_out(self, digest: str, dest: Path) -> None:
        """Copy an artifact out, hashing it on the way: a corrupt one raises DigestMismatch
        and leaves no file behind."""
        h = hashlib.sha256()
        try:
            with self.open(digest) as src, open(dest, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != hex_of(digest):
                raise DigestMismatch(f"artifact {hex_of(digest)[:16]}... is corrupt in "
                                     f"{self.root}", got=h.hexdigest())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
