"""Images that outlive their tags: ``docker save`` archives in the artifact store, split into
their members so layers shared between images (a base and everything built on it) are
stored once, and getting a recorded image back into the engine for a replay.

An archive is an *index* artifact (JSON, kind ``repro-image-archive``) listing the archive's
tar members in order, each file member by the sha256 of its bytes, also an artifact. Its
sha256 is what records and the ``images`` table hold. Loading streams the tar back together
from the members; every member is hash-checked first. (Stores written before the split hold
the whole tar as one artifact; those still load.)

Order of preference when the engine lacks an image: the archive in the store, then a
registry by digest (the spec's pinned ref, or a recorded ``repro image push``). Whatever
comes back must have exactly the recorded image id.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .engine import Engine, repository_of
from .errors import CannotReplay, ImageError, ReproError
from .hashing import CHUNK, sha256_file
from .record import ImageRef
from .store import Store

INDEX_KIND = "repro-image-archive"
INDEX_FORMAT = 1
BLOCK = tarfile.BLOCKSIZE


def archiving_enabled() -> bool:
    return os.environ.get("REPRO_ARCHIVE_IMAGES", "1").lower() not in ("0", "false", "no", "off")


def ensure_archived(image_id: str, store: Store, engine: Engine,
                    on_line: Callable[[str], None]) -> str:
    """sha256 hex of the image's archive index in the store, saving it on first use."""
    known = store.runs.image_archive(image_id)
    if known and complete(known[0], store):
        return known[0]
    on_line(f"archiving image {image_id[:19]} into the store (first use of this image)")
    index, new_bytes = split_into_store(engine.save(image_id), store,
                                        f"image {image_id[:19]} archive", on_line)
    index_sha = store.artifacts.put_bytes(json.dumps(index, sort_keys=True).encode())
    store.runs.add_image_archive(image_id, index_sha, index["size"])
    shared = index["size"] - new_bytes
    on_line(f"archived image {image_id[:19]}: {index['size'] >> 20} MiB"
            + (f" ({shared >> 20} MiB of layers already in the store)" if shared >> 20 else ""))
    return index_sha


def split_into_store(chunks: Iterable[bytes], store: Store, name: str,
                     on_line: Callable[[str], None] = lambda _: None) -> tuple[dict, int]:
    """Store each file of a tar stream as an artifact; return (index, bytes newly stored).
    Each member of 64 MiB or more gets a progress line (a CUDA image has several GiB)."""
    members: list[dict[str, Any]] = []
    total = new = 0
    try:
        with tarfile.open(fileobj=_Reader(chunks), mode="r|", bufsize=CHUNK) as tar:
            for m in tar:
                entry: dict[str, Any] = {"name": m.name, "type": m.type.decode("latin-1"),
                                         "mode": m.mode, "mtime": int(m.mtime)}
                if m.issym() or m.islnk():
                    entry["linkname"] = m.linkname
                if m.isreg():
                    f = tar.extractfile(m)
                    assert f is not None
                    sha, size, fresh = store.artifacts.put_stream_new(f, name=f"{name}: {m.name}")
                    entry.update(sha256=sha, size=size)
                    total += size
                    new += size if fresh else 0
                    if size >= 64 << 20:
                        on_line(f"  {m.name}: {size >> 20} MiB"
                                + ("" if fresh else " (already in the store)"))
                members.append(entry)
    except tarfile.TarError as e:
        raise ImageError(f"{name}: the engine's image archive is not a tar ({e})") from e
    return {"kind": INDEX_KIND, "format": INDEX_FORMAT, "size": total,
            "members": members}, new


def read_index(sha: str, store: Store) -> dict[str, Any] | None:
    """The index behind an archive digest; None for an archive stored whole (older stores)."""
    with store.artifacts.open(sha) as f:
        head = f.read(1)
        if head != b"{":
            return None
        try:
            doc = json.loads(head + f.read())
        except ValueError:
            return None
    return doc if isinstance(doc, dict) and doc.get("kind") == INDEX_KIND else None


def member_digests(sha: str, store: Store) -> list[tuple[str, str]]:
    """(member name, sha256) of every file an archive index names ([] when stored whole)."""
    index = read_index(sha, store) if store.artifacts.has(sha) else None
    if index is None:
        return []
    return [(m["name"], m["sha256"]) for m in index["members"] if "sha256" in m]


def complete(sha: str, store: Store) -> bool:
    """The archive and every member it names are in the store."""
    return store.artifacts.has(sha) and all(
        store.artifacts.has(member) for _, member in member_digests(sha, store))


def archive_of(image: ImageRef, store: Store) -> str | None:
    if image.archive and complete(image.archive, store):
        return image.archive
    known = store.runs.image_archive(image.digest)
    return known[0] if known and complete(known[0], store) else None


def ensure_present(image: ImageRef, store: Store, engine: Engine,
                   on_line: Callable[[str], None]) -> str:
    """Make the engine hold ``image.digest``; say how ('engine', 'archive', 'registry')."""
    if engine.image(image.digest) is not None:
        return "engine"
    archive = archive_of(image, store)
    if archive is not None:
        for what, sha in [("archive", archive), *member_digests(archive, store)]:
            if sha256_file(store.artifacts.path(sha))[0] != sha:
                raise CannotReplay(f"image {image.digest[:19]}: {what} ({sha[:16]}...) is "
                                   "corrupt in the store (its bytes no longer match their "
                                   "hash); run `repro fsck`, re-export or re-push the image")
        on_line(f"loading image {image.digest[:19]} from the store's archive")
        index = read_index(archive, store)
        engine.load(join_from_store(index, store) if index is not None
                    else store.artifacts.chunks(archive))
        if engine.image(image.digest) is not None:
            return "archive"
    for ref in _registry_refs(image, store):
        on_line(f"pulling {ref}")
        try:
            engine.pull(ref)
        except ReproError as e:
            on_line(f"pull failed: {e}")
            continue
        if engine.image(image.digest) is not None:
            return "registry"
        raise CannotReplay(f"{ref} did not give the recorded image {image.digest[:19]}; the "
                           "registry serves something else under that digest")
    raise CannotReplay(f"image {image.digest[:19]}... is not in the engine, not archived in "
                       "the store and not pushed anywhere known; export the run with its "
                       "image from a machine that has it (`repro export RUN --bundle DIR`)")


def join_from_store(index: dict[str, Any], store: Store) -> Iterator[bytes]:
    """The archive as a tar stream again, member by member, in the recorded order."""
    for m in index["members"]:
        info = tarfile.TarInfo(m["name"])
        info.type = m["type"].encode("latin-1")
        info.mode, info.mtime = m["mode"], m["mtime"]
        info.linkname = m.get("linkname", "")
        info.size = m.get("size", 0)
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        if "sha256" in m:
            yield from store.artifacts.chunks(m["sha256"])
            if info.size % BLOCK:
                yield b"\0" * (BLOCK - info.size % BLOCK)
    yield b"\0" * (2 * BLOCK)  # end of archive


class _Reader(io.RawIOBase):
    """A file object over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]  # a view: no copy of the rest
        return n


def _registry_refs(image: ImageRef, store: Store) -> list[str]:
    refs = []
    if image.ref and "@sha256:" in image.ref:
        refs.append(image.ref)
    elif image.ref and image.repo_digest:
        refs.append(f"{repository_of(image.ref)}@{image.repo_digest}")
    refs += [f"{repo}@{digest}" for repo, digest in store.runs.pushes(image.digest)]
    return list(dict.fromkeys(refs))


