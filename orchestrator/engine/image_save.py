"""Writing an image's archive into the store: ``docker save`` split into its members
(``image_archive.split_into_store``), on first use of an image, before the job (a scheduler's
run) or beside it (``Beside``: a launch here). The archive's format, and getting an image back
into an engine, are ``image_archive``'s.

A first launch of a new image used to archive it before the job started: about 4 s for a
400 MiB image here, most of it the engine's own pace of ``docker save``. Beside the job, it
costs what the archive takes beyond the job's end (BENCHMARKS.md, "first launch").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from ..errors import ReproError
from ..hashing import canonical_json, hex_of, shown
from ..store import Store
from ..store.protocol import Artifacts
from ..untrusted import HEX64
from . import ImageBackend
from .image_archive import NotStored, complete, split_into_store


def ensure_archived(image_id: str, store: Store, engine: ImageBackend,
                    on_line: Callable[[str], None]) -> str:
    """sha256 hex of the image's archive index in the store, saving it on first use."""
    known = archived_already(image_id, store)
    if known is not None:
        return known
    on_line(f"archiving image {shown(image_id)} into the store (first use of this image)")
    archived = archive(image_id, store.artifacts, engine, on_line)
    store.runs.add_image_archive(image_id, archived.sha256, archived.size)
    on_line(archived.summary())
    return archived.sha256


def archived_already(image_id: str, store: Store) -> str | None:
    """The sha256 of the image's archive when the store holds it whole."""
    known = store.runs.image_archive(image_id)
    return known[0] if known and complete(known[0], store) else None


@dataclass(frozen=True)
class Archived:
    """An image's archive, whole in the artifact store (not yet in the ``images`` table)."""

    image_id: str
    sha256: str  # of its index
    size: int  # bytes of its members
    new: int  # of which newly stored

    def summary(self) -> str:
        shared = self.size - self.new
        return (f"archived image {shown(self.image_id)}: {self.size >> 20} MiB"
                + (f" ({shared >> 20} MiB of layers already in the store)" if shared >> 20
                   else ""))


class Stopped(Exception):
    """An archive stopped before its end (``archive``'s ``stop`` was set)."""


def archive(image_id: str, artifacts: Artifacts, engine: ImageBackend,
            on_line: Callable[[str], None] = lambda _: None,
            stop: threading.Event | None = None) -> Archived:
    """``docker save`` of ``image_id`` split into ``artifacts`` (the artifact store only:
    this may run on a thread of its own). A layer the store holds already, one of the
    image's diff_ids, is hashed as it streams by and not written again. Stopped (between
    chunks) once ``stop`` is set."""
    info = engine.image(image_id) or {}
    stored: dict[int, set[str]] = {}
    for diff_id in info.get("layers") or []:
        if isinstance(diff_id, str) and HEX64.match(hex_of(diff_id)) and artifacts.has(diff_id):
            stored.setdefault(artifacts.size(diff_id), set()).add(hex_of(diff_id))
    what = f"image {shown(image_id)} archive"
    try:
        index, new = split_into_store(_until(engine.save(image_id), stop), artifacts, what,
                                      on_line, stored)
    except NotStored as e:  # same size as a stored layer, other bytes: no copy was kept
        on_line(f"{what}: {e}; saving the image again")
        index, new = split_into_store(_until(engine.save(image_id), stop), artifacts, what,
                                      on_line)
    sha = artifacts.put(canonical_json(index).encode(), name="image index").sha256
    return Archived(image_id, sha, index["size"], new)


class Beside:
    """An image archived on a thread of its own while the run goes on (a launch's first
    use of an image): the thread has its own engine client and touches only the artifact
    store; ``finish``, in the caller's thread, waits for it (or stops it) and enters the
    archive in the ``images`` table. A store reached over a network (a registry) or an
    engine that cannot open a second client archives before the job instead."""

    def __init__(self, image_id: str, store: Store, engine: ImageBackend) -> None:
        self.image_id = image_id
        self.stop = threading.Event()
        self.done: Archived | None = None
        self.problem = ""
        opened = cast(Any, engine).another()
        self.thread = threading.Thread(target=self._run, args=(store.artifacts, opened),
                                       name="image-archive", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @staticmethod
    def possible(store: Store, engine: ImageBackend) -> bool:
        return not store.artifacts.remote and hasattr(engine, "another")

    def _run(self, artifacts: Artifacts, engine: Any) -> None:
        try:
            self.done = archive(self.image_id, artifacts, engine, stop=self.stop)
        except Stopped:
            self.problem = "it was stopped before it was whole"
        except ReproError as e:
            self.problem = str(e)
        except Exception as e:  # whatever broke, the run is recorded; the reason with it
            self.problem = f"{type(e).__name__}: {e}"
        finally:
            try:
                engine.close()
            except Exception:  # a connection that will not close is dropped anyway
                pass

    def finish(self, store: Store, on_line: Callable[[str], None], stop: bool = False
               ) -> str | None:
        """The archive's sha256 once it is whole and entered, else None (``problem`` says
        why). ``stop``: do not wait for it (an interrupted run)."""
        if self.thread.ident is None:  # never started (interrupted before)
            self.problem = "the run ended before it began"
            return None
        if stop:
            self.stop.set()
        elif self.thread.is_alive():
            on_line(f"finishing the archive of image {shown(self.image_id)} (first use of "
                    "this image)")
        try:
            self.thread.join()
        except KeyboardInterrupt:  # a second Ctrl-C: stop it, the record still gets saved
            self.stop.set()
            self.thread.join()
        if self.done is None:
            return None
        try:
            store.runs.add_image_archive(self.image_id, self.done.sha256, self.done.size)
        except ReproError as e:
            self.problem = str(e)
            return None
        on_line(self.done.summary())
        return self.done.sha256


def _until(chunks: Iterable[bytes], stop: threading.Event | None) -> Iterator[bytes]:
    for chunk in chunks:
        if stop is not None and stop.is_set():
            raise Stopped("stopped before the archive was whole")
        yield chunk
