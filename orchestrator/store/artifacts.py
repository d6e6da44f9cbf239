"""Content-addressed artifact folder: ``artifacts/ab/cdef...`` named by sha256 hex.

Every write goes to a temp file that is hashed while it is written, fsynced, then renamed to
its address, so a reader never sees a partial artifact and a byte is read once.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..errors import StoreError
from ..hashing import Hashing, chunks_of, hex_of, sha256_file
from ..untrusted import HEX64


class DigestMismatch(StoreError):
    def __init__(self, message: str, got: str) -> None:
        super().__init__(message)
        self.got = got


class TooLarge(StoreError):
    """A write went past the limit its caller set (nothing was stored)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class Put:
    """What a write stored: its sha256, its size, and whether the bytes were new."""

    sha256: str
    size: int
    created: bool


Source = bytes | Path | BinaryIO | Iterable[bytes]


class ArtifactStore:
    """Artifacts by sha256: one ``put``, one ``check``, and ``size``/``open``/``local_path``
    for readers, so no caller builds a path into the store itself."""

    remote = False  # every artifact is a file here: no run manifest to keep

    def __init__(self, root: Path, shared: bool = False) -> None:
        """``shared``: the folder is on a filesystem other machines write too (NFS, a
        cluster's shared disk), where advisory locks are not to be relied on: temp files are
        named by host and process, and only old ones are ever cleaned up."""
        self.root = root
        self.tmp = root / "tmp"
        self.shared = shared

    def _path(self, digest: str) -> Path:
        """Where an artifact lives. Only a sha256 names one: anything else (``../x``, a path
        from a hostile record) is refused here, whatever the caller checked before."""
        h = hex_of(digest)
        if not HEX64.match(h):
            raise StoreError(f"{digest[:80]!r} is not a sha256 digest; refusing to use it as "
                             "an artifact name")
        return self.root / h[:2] / h[2:]

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"artifact {digest} is missing from {self.root}") from None

    def local_path(self, digest: str) -> Path:
        """A file on this machine holding the artifact (what a container bind-mounts). For
        this store it is the artifact itself; a remote store would materialize it into a
        verified local cache first."""
        path = self._path(digest)
        if not path.is_file():
            raise StoreError(f"artifact {digest} is missing from {self.root}")
        return path

    def check(self, digest: str) -> str:
        """'ok', 'missing', or 'corrupt' (the bytes no longer hash to the name)."""
        path = self._path(digest)
        if not path.is_file():
            return "missing"
        return "ok" if sha256_file(path)[0] == hex_of(digest) else "corrupt"

    def put(self, source: Source, *, limit: int | None = None, expect: str | None = None,
            name: str = "artifact") -> Put:
        """Store ``source`` (bytes, a file path, a binary stream or byte chunks), hashed
        while it is written, at most ``limit`` bytes (TooLarge); with ``expect``, bytes that
        hash to anything else are discarded (DigestMismatch)."""
        if isinstance(source, bytes):
            h = hashlib.sha256(source).hexdigest()
            if expect is None and self.has(h):
                return Put(h, len(source), False)
            return self._put([source], limit, name, expect)
        if isinstance(source, Path):
            with open(source, "rb") as f:
                return self._put(chunks_of(f), limit, name, expect)
        if hasattr(source, "read"):
            return self._put(chunks_of(cast(BinaryIO, source)), limit, name, expect)
        return self._put(source, limit, name, expect)

    def _put(self, chunks: Iterable[bytes], limit: int | None, name: str,
             expect: str | None) -> Put:
        size = 0
        with self._writer() as (out, state), Hashing() as h:
            for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(f"{name}: larger than the limit of {limit} bytes", limit)
                h.update(chunk)
                out.write(chunk)
            got = h.hexdigest()
            if expect is not None and got != expect:
                raise DigestMismatch(f"{name}: its bytes hash to {got}, not {expect}", got=got)
            state["digest"] = got
        return Put(got, size, state["created"])

    def copy_file(self, source: Path, expect: str, name: str = "artifact",
                  advance: Callable[[int], None] = lambda _: None) -> Put:
        """Store a file that is another store's artifact ``expect``, copied by the kernel
        (``copy_file_range``: no trip through this process), then hashed from the copy while
        the copy is flushed to disk: the bytes that land are the bytes checked, and bytes
        that hash to anything else are discarded (DigestMismatch). Where the kernel cannot
        copy between the two folders, the copy goes through here as ``put`` does. A push
        of 1 GiB to a shared folder: 3.1 s through this process, now about the time of
        `cp` then `sync` plus one sha256 (BENCHMARKS.md)."""
        if self.has(expect):
            return Put(hex_of(expect), self.size(expect), False)
        fd, tmp_name = self._temp()
        with self._removed_on_error(tmp_name), open(source, "rb") as src, \
                os.fdopen(fd, "wb") as out:
            size = os.fstat(src.fileno()).st_size
            if not _kernel_copy(src.fileno(), out.fileno(), size, advance):
                for chunk in chunks_of(src):
                    out.write(chunk)
                    advance(len(chunk))
                out.flush()
            synced: list[OSError] = []

            def sync() -> None:
                try:
                    os.fsync(out.fileno())
                except OSError as e:
                    synced.append(e)

            flusher = threading.Thread(target=sync, name="fsync", daemon=True)
            flusher.start()
            try:
                got = sha256_file(Path(tmp_name))[0]
            finally:
                flusher.join()
            if synced:
                raise synced[0]
            if got != hex_of(expect):
                raise DigestMismatch(f"{name}: its bytes hash to {got}, not "
                                     f"{hex_of(expect)}", got=got)
            created = self._install(out, tmp_name, expect)
        return Put(got, size, created)

    @contextmanager
    def _removed_on_error(self, tmp_name: str) -> Iterator[None]:
        """Writes into a temp file: it goes on any error, an OSError as a StoreError."""
        try:
            yield
        except OSError as e:
            _unlink_quietly(tmp_name)
            raise StoreError(f"cannot write artifact under {self.root}: {e.strerror or e}") from e
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def _temp(self) -> tuple[int, str]:
        """A new temp file, locked, as (fd, name). `repro gc` removes only "in-*" files no
        writer holds (stale_temp_files); the file gets that name only once it is locked, so gc
        never sees one between its creation and its lock. The lock lasts until the fd closes."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        if self.shared:  # no locks: the name says whose it is (see stale_temp_files)
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"in-{_HOST}-{os.getpid()}-")
            return fd, name
        fd, new_name = tempfile.mkstemp(dir=self.tmp, prefix="new-")
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp_name = str(self.tmp / ("in-" + Path(new_name).name[4:]))
        os.rename(new_name, tmp_name)
        return fd, tmp_name

    def _install(self, out: BinaryIO, tmp_name: str, digest: str,
                 replace: bool = False) -> bool:
        """Move a written, fsynced temp file to its address; False when it was there already
        (``replace``: overwrite it anyway, to repair a corrupt copy)."""
        dest = self._path(digest)
        if dest.exists() and not replace:
            os.unlink(tmp_name)
            return False
        dest.parent.mkdir(exist_ok=True)
        os.fchmod(out.fileno(), 0o444)
        os.replace(tmp_name, dest)
        return True

    @contextmanager
    def _writer(self) -> Iterator[tuple[BinaryIO, dict[str, Any]]]:
        """A temp file to write; the caller sets ``state["digest"]`` when done, and the file
        becomes that artifact (``state["created"]``: it was not in the store before)."""
        fd, tmp_name = self._temp()
        state: dict[str, Any] = {"digest": None, "created": False}
        with self._removed_on_error(tmp_name), os.fdopen(fd, "wb") as out:
            yield out, state
            out.flush()
            os.fsync(out.fileno())
            if not state["digest"]:
                raise StoreError("artifact write finished without a digest")
            state["created"] = self._install(out, tmp_name, state["digest"])

    @contextmanager
    def staging(self) -> Iterator[Stage]:
        """Writes that land together or not at all: each is hashed into a locked temp file
        and renamed into place only when the block ends without an error (a bundle import
        writes nothing unless every artifact checked out)."""
        stage = Stage(self)
        try:
            yield stage
            stage.commit()
        finally:
            stage.discard()

    def stale_temp_files(self) -> list[Path]:
        """Temp files of writes that were interrupted: those no live writer holds locked (on
        a shared folder: this host's whose process is gone, and anyone's a day old), and one
        killed between its creation and its lock."""
        if not self.tmp.is_dir():
            return []
        if self.shared:
            return [p for p in self.tmp.glob("in-*") if _abandoned(p)]
        stale = [p for p in self.tmp.glob("new-*") if _older(p, NEW_TEMP_MAX_AGE_S)]
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

    def keep_run(self, run_id: str, needs: dict[str, int]) -> None:
        """Nothing to do: a folder keeps what it holds (a registry needs a manifest)."""

    def chunks(self, digest: str) -> Iterator[bytes]:
        """An artifact's bytes, as they are read (not hash-checked: see ``verify``)."""
        with self.open(digest) as f:
            yield from chunks_of(f)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self._path(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"artifact {digest} is missing from {self.root}") from None

    def copy_out(self, digest: str, dest: Path) -> None:
        """Copy an artifact out, hashing it on the way: a corrupt one raises DigestMismatch
        and leaves no file behind."""
        h = hashlib.sha256()
        try:
            with self.open(digest) as src, open(dest, "wb") as out:
                for chunk in chunks_of(src):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != hex_of(digest):
                raise DigestMismatch(f"artifact {hex_of(digest)[:16]}... is corrupt in "
                                     f"{self.root}", got=h.hexdigest())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


class Stage:
    """Artifacts written but not yet in place (see ``ArtifactStore.staging``)."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._pending: list[tuple[BinaryIO, str, str, bool]] = []

    def put_stream(self, stream: BinaryIO, expect: str, name: str,
                   replace: bool = False) -> int:
        """Hash ``stream`` into a temp file; bytes that hash to anything but ``expect`` raise
        DigestMismatch. Returns the size."""
        fd, tmp_name = self.store._temp()
        out = os.fdopen(fd, "wb")
        size = 0
        try:
            with Hashing() as h:
                for chunk in chunks_of(stream):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                got = h.hexdigest()
            if got != expect:
                raise DigestMismatch(f"{name}: its bytes hash to {got}, not {expect}", got=got)
            out.flush()
            os.fsync(out.fileno())
        except BaseException as e:
            out.close()
            _unlink_quietly(tmp_name)
            if isinstance(e, OSError):
                raise StoreError(f"cannot stage {name} under {self.store.root}: "
                                 f"{e.strerror or e}") from e
            raise
        self._pending.append((out, tmp_name, expect, replace))
        return size

    def commit(self) -> None:
        while self._pending:
            out, tmp_name, digest, replace = self._pending.pop(0)
            with out:
                try:
                    self.store._install(out, tmp_name, digest, replace)
                except OSError as e:
                    _unlink_quietly(tmp_name)
                    raise StoreError(f"cannot write artifact under {self.store.root}: "
                                     f"{e.strerror or e}") from e

    def discard(self) -> None:
        while self._pending:
            out, tmp_name, _, _ = self._pending.pop()
            out.close()
            _unlink_quietly(tmp_name)


_HOST = socket.gethostname().replace("-", "_")[:64] or "host"
SHARED_TEMP_MAX_AGE_S = 86400


NEW_TEMP_MAX_AGE_S = 3600  # a "new-*" file is locked and renamed within microseconds; one
# an hour old is a writer's killed between the two (SIGKILL)


def _older(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _abandoned(path: Path) -> bool:
    """A shared store's temp file whose writer is gone: on this host, its process has
    exited; on any host, it has not been written to for a day."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    parts = path.name.split("-")
    if len(parts) >= 4 and parts[1] == _HOST and parts[2].isdigit():
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return age > SHARED_TEMP_MAX_AGE_S


def _kernel_copy(src: int, dst: int, size: int, advance: Callable[[int], None]) -> bool:
    """``size`` bytes from ``src`` to ``dst`` by ``copy_file_range``, 64 MiB at a time (the
    progress bar moves); False, nothing copied, where this kernel or these filesystems cannot
    (then the caller copies)."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, min(64 << 20, size - done))
        except OSError as e:
            if done == 0 and e.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                         errno.EINVAL, errno.EPERM):
                return False
            raise
        if n == 0:  # the source shrank under us: the hash check says so
            break
        done += n
        advance(n)
    return True


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
