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

An archive may come from a bundle, so it is hostile input: its index is validated, every
member is hash-checked before the engine sees a byte, and the engine is handed only the one
image the record names (the ``manifest.json`` entry whose config hashes to the image id)
with no tags at all: an archive never names images in this engine. repro tags the image
itself (``repro-loaded:<id>``), once the engine holds exactly the recorded id.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..archives import link_stays_inside, member_parts
from ..errors import CannotReplay, ImageError, ReproError
from ..hashing import CHUNK, hex_of, shown
from ..record import Hex64, ImageRef
from ..store import Store
from ..store.protocol import Artifacts
from ..untrusted import Untrusted, loads
from . import ImageBackend, repository_of

INDEX_KIND = "repro-image-archive"
INDEX_FORMAT = 1
BLOCK = tarfile.BLOCKSIZE
INDEX_LIMIT = 16 << 20  # bytes of an index (a CUDA image's has a few hundred members)
MANIFEST_LIMIT = 1 << 20  # bytes of the archive's own manifest.json
LOADED_REPO = "repro-loaded"  # the tag repro gives an image it loaded (never a recipe's name)
REGULAR = ("0", "\x00", "7")


class _Member(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
    type: Literal["0", "\x00", "7", "1", "2", "5"]
    mode: Annotated[int, Field(ge=0, le=0o7777777)]  # a tar header field: 7 octal digits
    mtime: int
    linkname: Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")] | None = None
    sha256: Hex64 | None = None
    size: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _file_has_bytes(self) -> _Member:
        if (self.type in REGULAR) != (self.sha256 is not None and self.size is not None):
            raise ValueError("a regular file member needs sha256 and size; others have none")
        return self

    @model_validator(mode="after")
    def _stays_inside(self) -> _Member:
        """What the engine will unpack: plain relative names, links that stay inside (the
        same rules as ``archives.extract_tar``)."""
        parts = member_parts(self.name)
        if parts is None:
            raise ValueError(f"member {self.name[:100]!r} is not a plain relative path")
        if self.type == "2" and not link_stays_inside(parts, self.linkname or ""):
            raise ValueError(f"link {self.name[:100]!r} leaves the archive")
        if self.type == "1" and member_parts(self.linkname or "") is None:
            raise ValueError(f"hard link {self.name[:100]!r} leaves the archive")
        return self


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["repro-image-archive"]
    format: Literal[1]
    size: Annotated[int, Field(ge=0)]
    members: list[_Member]


class NotStored(Exception):
    """A member taken for a stored layer (by its size) hashed to something else."""


def split_into_store(chunks: Iterable[bytes], artifacts: Artifacts, name: str,
                     on_line: Callable[[str], None] = lambda _: None,
                     stored: dict[int, set[str]] | None = None) -> tuple[dict, int]:
    """Store each file of a tar stream as an artifact; return (index, bytes newly stored).
    Each member of 64 MiB or more gets a progress line (a CUDA image has several GiB).
    ``stored``: sizes of artifacts the store holds (a layer's size, its sha256 hex digests);
    a member of such a size is hashed, not written, and NotStored is raised when it hashes
    to none of them (its bytes are gone: the caller streams the archive again)."""
    members: list[dict[str, Any]] = []
    total = new = 0
    try:
        with tarfile.open(fileobj=ChunkReader(chunks), mode="r|", bufsize=CHUNK) as tar:
            for m in tar:
                entry: dict[str, Any] = {"name": m.name, "type": m.type.decode("latin-1"),
                                         "mode": m.mode, "mtime": int(m.mtime)}
                if m.issym() or m.islnk():
                    entry["linkname"] = m.linkname
                if m.isreg():
                    f = tar.extractfile(m)
                    assert f is not None
                    if stored and m.size in stored:
                        sha, created = _hashed(f, stored[m.size], m.name), False
                    else:
                        put = artifacts.put(f, name=f"{name}: {m.name}")
                        sha, created = put.sha256, put.created
                    entry.update(sha256=sha, size=m.size)
                    total += m.size
                    new += m.size if created else 0
                    if m.size >= 64 << 20:
                        on_line(f"  {m.name}: {m.size >> 20} MiB"
                                + ("" if created else " (already in the store)"))
                members.append(entry)
    except tarfile.TarError as e:
        raise ImageError(f"{name}: the engine's image archive is not a tar ({e})") from e
    return {"kind": INDEX_KIND, "format": INDEX_FORMAT, "size": total,
            "members": members}, new


def _hashed(f: IO[bytes], candidates: set[str], name: str) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    got = h.hexdigest()
    if got not in candidates:
        raise NotStored(f"member {name[:100]} has the size of a stored layer, not its bytes")
    return got


def parse_index(data: bytes, what: str) -> dict[str, Any] | None:
    """An index document, validated; None when ``data`` is not an index at all (an archive
    stored whole). A document that claims to be an index and is malformed: CannotReplay."""
    try:
        doc = loads(data, what)
    except Untrusted:
        return None
    if not isinstance(doc, dict) or doc.get("kind") != INDEX_KIND:
        return None
    try:
        _Index.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CannotReplay(f"{what}: malformed archive index at {where[:120]} "
                           f"({first['msg'][:120]}); re-export the run") from None
    return doc


def read_index(sha: str, store: Store) -> dict[str, Any] | None:
    """The index behind an archive digest; None for an archive stored whole (older stores)."""
    with store.artifacts.open(sha) as f:
        head = f.read(1)
        if head != b"{":
            return None
        data = head + f.read(INDEX_LIMIT)
    if len(data) > INDEX_LIMIT:
        return None
    return parse_index(data, f"image archive {sha[:16]}...")


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


def _brought(image: ImageRef, store: Store) -> bool:
    """The store holds the image's archive, whole and intact, and it is that image's."""
    archive = archive_of(image, store)
    if archive is None:
        return False
    members = member_digests(archive, store)
    return hex_of(image.digest) in {sha for _, sha in members} and all(
        store.artifacts.check(sha) == "ok" for sha in [archive, *(m for _, m in members)])


def archive_of(image: ImageRef, store: Store) -> str | None:
    if image.archive and complete(image.archive, store):
        return image.archive
    known = store.runs.image_archive(image.digest)
    return known[0] if known and complete(known[0], store) else None


def ensure_present(image: ImageRef, store: Store, engine: ImageBackend,
                   on_line: Callable[[str], None], registries: bool = True,
                   foreign: bool = False, local_image: bool = False) -> str:
    """Make the engine hold ``image.digest``; say how ('engine', 'archive', 'registry').
    ``registries=False``: pull only from the registry this machine's own artifact store
    names (``REPRO_ARTIFACTS=oci://HOST/...``), never from one a record or another member's
    row names (it came from elsewhere). A pull is by digest, and the id checked after.

    ``foreign``: a run from elsewhere runs only an image it brings. Naming the id of an
    image this machine's engine holds (a private one, say) does not get it run there: the
    engine's copy is used when the store holds that image's archive (complete, every part
    hash-checked, holding that config), when this store's own registry serves it by digest,
    or when the user grants it (``local_image``, `--local-image`)."""
    if engine.image(image.digest) is not None:
        if not foreign or local_image or _brought(image, store):
            return "engine"
        if _pulled(_registry_refs(image, store, _own_registry(store)), image, engine,
                   on_line):
            return "registry"
        raise CannotReplay(f"image {shown(image.digest)}: this machine's engine holds it, but "
                           "the run does not bring it (no archive of it in the store, not "
                           "served by this store's registry), and a run from elsewhere runs "
                           "only the image it brings; pass --local-image to run it in the "
                           "engine's copy (the job can read whatever that image holds)")
    archive = archive_of(image, store)
    if archive is not None:
        for what, sha in [("archive", archive), *member_digests(archive, store)]:
            if store.artifacts.check(sha) != "ok":
                raise CannotReplay(f"image {shown(image.digest)}: {what} ({sha[:16]}...) is "
                                   "corrupt in the store (its bytes no longer match their "
                                   "hash); run `repro fsck`, re-export or re-push the image")
        on_line(f"loading image {shown(image.digest)} from the store's archive")
        index = read_index(archive, store)
        if index is None:  # stored whole by an older repro: split it, then load as usual
            index, _ = split_into_store(store.artifacts.chunks(archive), store.artifacts,
                                        f"image {shown(image.digest)} archive")
        if _load(index, image.digest, store, engine):
            return "archive"
    if _pulled(_registry_refs(image, store, None if registries else _own_registry(store)),
               image, engine, on_line):
        return "registry"
    raise CannotReplay(f"image {shown(image.digest)}... is not in the engine, not archived in "
                       "the store and not pushed anywhere known; export the run with its "
                       "image from a machine that has it (`repro export RUN --bundle DIR`)")


def _pulled(refs: list[str], image: ImageRef, engine: ImageBackend,
            on_line: Callable[[str], None]) -> bool:
    """Pull by digest from each of ``refs`` until one gives the recorded image (the id of
    what it gave checked); a registry that serves something else under that digest is
    refused."""
    for ref in refs:
        on_line(f"pulling {ref}")
        try:
            engine.pull(ref)
        except ReproError as e:
            on_line(f"pull failed: {e}")
            continue
        if (engine.image(ref) or {}).get("id") == image.digest:
            return True
        raise CannotReplay(f"{ref} did not give the recorded image {shown(image.digest)}; the "
                           "registry serves something else under that digest")
    return False


def _load(index: dict[str, Any], image_id: str, store: Store, engine: ImageBackend) -> bool:
    """Load the one image ``image_id`` from an archive, untagged; tag it ourselves when the
    engine then holds exactly that id. An image the engine rejects cannot be replayed."""
    try:
        loaded = engine.load(join_from_store(index, store, image_id))
    except ImageError as e:
        raise CannotReplay(f"image {shown(image_id)}: the engine rejected its archive ({e}); "
                           "re-export the run from where it was recorded") from None
    for other in loaded:
        if other.startswith("sha256:") and other != image_id:  # nothing else may stay
            engine.remove_image(other)
    if engine.image(image_id) is None:
        return False
    engine.tag(image_id, LOADED_REPO, hex_of(image_id)[:12])
    return True


def join_from_store(index: dict[str, Any], store: Store,
                    image_id: str | None = None) -> Iterator[bytes]:
    """The archive as a tar stream again, member by member, in the recorded order. With
    ``image_id``, only that image and no tags: ``manifest.json`` keeps the one entry whose
    config is that image, without RepoTags; ``repositories`` is left out and ``index.json``
    loses its image names."""
    rewritten = _untagged(index, store, image_id) if image_id else {}
    for m in index["members"]:
        name = m["name"]
        if image_id and name == "repositories":
            continue
        info = tarfile.TarInfo(name)
        info.type = m["type"].encode("latin-1")
        info.mode, info.mtime = m["mode"], m["mtime"]
        info.linkname = m.get("linkname") or ""
        info.size = m.get("size") or 0
        if name in rewritten:
            info.size = len(rewritten[name])
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        if name in rewritten:
            yield rewritten[name]
        elif "sha256" in m:
            yield from store.artifacts.chunks(m["sha256"])
        if info.size % BLOCK:
            yield b"\0" * (BLOCK - info.size % BLOCK)
    yield b"\0" * (2 * BLOCK)  # end of archive


def _untagged(index: dict[str, Any], store: Store, image_id: str) -> dict[str, bytes]:
    """New bytes for the archive's manifest.json (and index.json): only ``image_id``, no
    names. CannotReplay when the archive does not hold that image."""
    members = {m["name"]: m for m in index["members"] if "sha256" in m}
    what = f"image {shown(image_id)} archive"

    def doc_of(name: str) -> Any:
        with store.artifacts.open(members[name]["sha256"]) as f:
            data = f.read(MANIFEST_LIMIT + 1)
        try:
            return loads(data[:MANIFEST_LIMIT], f"{what}: {name}")
        except Untrusted as e:
            raise CannotReplay(f"{e}; re-export the run") from None

    if "manifest.json" not in members:
        raise CannotReplay(f"{what} has no manifest.json; re-export the run")
    entries = doc_of("manifest.json")
    want = hex_of(image_id)
    keep = [e for e in entries if isinstance(e, dict) and isinstance(e.get("Config"), str)
            and members.get(e["Config"], {}).get("sha256") == want] \
        if isinstance(entries, list) else []
    if not keep:
        raise CannotReplay(f"{what} does not hold that image (no manifest entry whose config "
                           "hashes to its id); re-export the run")
    out = {"manifest.json": json.dumps([{**keep[0], "RepoTags": None}]).encode()}
    if "index.json" in members:
        oci = doc_of("index.json")
        if isinstance(oci, dict) and isinstance(oci.get("manifests"), list):
            for entry in oci["manifests"]:
                if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict):
                    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
                        entry["annotations"].pop(key, None)
            out["index.json"] = json.dumps(oci).encode()
    return out


class ChunkReader(io.RawIOBase):
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


def _registry_refs(image: ImageRef, store: Store, only: str | None) -> list[str]:
    """Where the image may be pulled by digest; ``only``: from that registry host alone
    ("": from none)."""
    refs = []
    if image.ref and "@sha256:" in image.ref:
        refs.append(image.ref)
    elif image.ref and image.repo_digest:
        refs.append(f"{repository_of(image.ref)}@{image.repo_digest}")
    refs += [f"{repo}@{digest}" for repo, digest in store.runs.pushes(image.digest)]
    if only is not None:
        refs = [r for r in refs if only and r.startswith(f"{only}/")]
    return list(dict.fromkeys(refs))


def _own_registry(store: Store) -> str:
    """The registry host of this machine's own artifact store ("" for a folder)."""
    return str(getattr(store.artifacts, "hostname", "") or "")


