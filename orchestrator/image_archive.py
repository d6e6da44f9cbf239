"""Images that outlive their tags: ``docker save`` archives in the artifact store (once per
image id), and getting a recorded image back into the engine for a replay.

Order of preference when the engine lacks an image: the archive in the store (hash-checked as
it is read), then a registry by digest (the spec's pinned ref, or a recorded ``repro image
push``). Whatever comes back must have exactly the recorded image id.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .engine import Engine, repository_of
from .errors import CannotReplay, ReproError
from .hashing import CHUNK, sha256_file
from .record import ImageRef
from .store import Store


def archiving_enabled() -> bool:
    return os.environ.get("REPRO_ARCHIVE_IMAGES", "1").lower() not in ("0", "false", "no", "off")


def ensure_archived(image_id: str, store: Store, engine: Engine,
                    on_line: Callable[[str], None]) -> str:
    """sha256 hex of the image's archive in the store, saving it on first use."""
    known = store.runs.image_archive(image_id)
    if known and store.artifacts.has(known[0]):
        return known[0]
    on_line(f"archiving image {image_id[:19]} into the store (first use of this image)")
    sha, size = store.artifacts.put_chunks(engine.save(image_id),
                                           name=f"image {image_id[:19]} archive")
    store.runs.add_image_archive(image_id, sha, size)
    on_line(f"archived image {image_id[:19]}: {size >> 20} MiB")
    return sha


def archive_of(image: ImageRef, store: Store) -> str | None:
    if image.archive and store.artifacts.has(image.archive):
        return image.archive
    known = store.runs.image_archive(image.digest)
    return known[0] if known and store.artifacts.has(known[0]) else None


def ensure_present(image: ImageRef, store: Store, engine: Engine,
                   on_line: Callable[[str], None]) -> str:
    """Make the engine hold ``image.digest``; say how ('engine', 'archive', 'registry')."""
    if engine.image(image.digest) is not None:
        return "engine"
    archive = archive_of(image, store)
    if archive is not None:
        path = store.artifacts.path(archive)
        if sha256_file(path)[0] != archive:
            raise CannotReplay(f"image archive {archive[:16]}... of {image.digest[:19]} is "
                               "corrupt in the store (its bytes no longer match their hash); "
                               "run `repro fsck`, re-export or re-push the image")
        on_line(f"loading image {image.digest[:19]} from the store's archive")
        with open(path, "rb", buffering=CHUNK) as f:
            engine.load(f)
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


def _registry_refs(image: ImageRef, store: Store) -> list[str]:
    refs = []
    if image.ref and "@sha256:" in image.ref:
        refs.append(image.ref)
    elif image.ref and image.repo_digest:
        refs.append(f"{repository_of(image.ref)}@{image.repo_digest}")
    refs += [f"{repo}@{digest}" for repo, digest in store.runs.pushes(image.digest)]
    return list(dict.fromkeys(refs))


