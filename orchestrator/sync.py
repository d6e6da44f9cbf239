"""`repro push` and `repro pull`: copy finished runs between this machine's store and the
team's (records, metric series, tags, notes, where a bundle's run came from, artifacts, and
the image by registry digest).

Order makes it safe to kill: every artifact first, each verified by its sha256 on the way
(a folder's copy is hashed as it is written; a registry checks the digest of each upload),
then the record, its series, origin and sweep in one transaction, then tags and notes (each
idempotent). A kill leaves at most artifacts no record refers to yet; the next push finds
them there and copies only the rest. A run already in the other store must be the identical
record: it is then only completed (missing artifacts, tags, notes), never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ReproError, StoreError, UsageError
from .fsck import keep, references
from .hashing import short
from .record import RunRecord
from .store import Store
from .store.artifacts import DigestMismatch
from .units import human_size

LARGE = 1 << 20  # an artifact at least this big gets its own progress line


@dataclass
class Side:
    """One end of a transfer, as the user knows it."""

    store: Store
    name: str  # "this store", "the team store"
    where: str  # its URL, without a password


@dataclass
class Moved:
    run: str
    state: str = "copied"  # or "present": the identical record was there already
    artifacts: int = 0
    bytes: int = 0
    tags: int = 0
    notes: int = 0
    diagnoses: int = 0
    image: str | None = None
    warnings: list[str] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        return dict(self.__dict__)


def select(src: Side, refs: list[str], where: Any | None) -> list[RunRecord]:
    """The runs to copy: those named and those matching ``where``, each replay after the run
    it replays (which comes along), oldest first. A run still going is refused."""
    chosen: dict[str, RunRecord] = {}
    for ref in refs:
        try:
            record = src.store.runs.get(ref)
        except StoreError as e:
            raise StoreError(f"{src.name} ({src.where}): {e}") from None
        chosen[record.id] = record
    if where is not None:
        for record in src.store.runs.query(where, None, None):
            chosen[record.id] = record
    if not chosen:
        raise UsageError(f"no run in {src.name} ({src.where}) matches; `repro runs` lists them")
    todo = list(chosen.values())
    while todo:  # a replay needs the run it replays
        original = todo.pop().replay_of
        if original and original not in chosen and src.store.runs.exists(original):
            chosen[original] = src.store.runs.get(original)
            todo.append(chosen[original])
    for record in chosen.values():
        if not record.status.terminal:
            raise UsageError(f"run {record.id} is {record.status}; wait for it to finish "
                             "(`repro gc` if its process died), then copy it")
    return sorted(chosen.values(), key=lambda r: (r.replay_of is not None, r.created_at, r.id))


def transfer(src: Side, dst: Side, records: list[RunRecord], verb: str,
             push_image: Callable[[RunRecord, Store, Callable[[str], None]], str | None] | None,
             bar: Any) -> list[Moved]:
    """Copy ``records`` from ``src`` to ``dst``; ``bar`` is a ``ui.TransferBar`` sized by
    :func:`plan_bytes`. Returns what happened to each run."""
    done = []
    for record in records:
        done.append(_one(src, dst, record, verb, push_image, bar))
    return done


def needs(src: Side, record: RunRecord) -> list[tuple[str, str]]:
    """(what, sha256) of every artifact the run needs that ``src`` should hold; an artifact
    its bundle did not carry (an imported run) is not needed."""
    absent = set((src.store.runs.origin(record.id) or {}).get("absent", []))

    def layers(archive: str) -> list[tuple[str, str]]:
        from .engine.image_archive import member_digests

        try:
            return member_digests(archive, src.store)
        except ReproError:
            return []  # the archive itself is reported missing below

    seen: set[str] = set()
    out = []
    for what, sha in references(record, src.store, layers):
        if sha not in seen and sha not in absent:
            seen.add(sha)
            out.append((what, sha))
    return out


def plan_bytes(src: Side, dst: Side, records: list[RunRecord]) -> int:
    """Bytes that will move (what ``dst`` lacks), for the progress bar."""
    total, seen = 0, set()
    for record in records:
        for _, sha in needs(src, record):
            if sha in seen:
                continue
            seen.add(sha)
            if src.store.artifacts.has(sha) and not dst.store.artifacts.has(sha):
                total += src.store.artifacts.size(sha)
    return total


def _one(src: Side, dst: Side, record: RunRecord, verb: str,
         push_image: Callable[[RunRecord, Store, Callable[[str], None]], str | None] | None,
         bar: Any) -> Moved:
    moved = Moved(record.id)
    there = dst.store.runs.exists(record.id)
    if there:
        _same(record, dst)
        moved.state = "present"
    for what, sha in needs(src, record):
        if dst.store.artifacts.has(sha):
            continue
        if not src.store.artifacts.has(sha):
            raise StoreError(f"{src.name} ({src.where}) lacks the {what} of run {record.id} "
                             f"(sha256:{sha[:16]}...); "
                             + ("`repro fsck` there names what else is gone" if verb == "push"
                                else "ask whoever launched it to `repro push` it again"))
        moved.bytes += _copy(src, dst, sha, f"{what} of {record.id}", verb, bar)
        moved.artifacts += 1
    _image_index(src, dst, record)
    if push_image is not None:
        moved.image = push_image(record, dst.store, bar.line)
    if not there:
        steps = [(name, step, value) for name, points in
                 src.store.runs.steps(record.id).items() for step, value in points]
        sweep = src.store.runs.sweep(record.sweep_id) if record.sweep_id else None
        archive = src.store.runs.image_archive(record.resolved.image.digest)
        try:
            dst.store.runs.copy_in(record, steps, src.store.runs.origin(record.id), sweep,
                                   (record.resolved.image.digest, *archive) if archive else None)
        except StoreError:
            if not dst.store.runs.exists(record.id):  # not a concurrent copy of the same run
                raise
            _same(record, dst)
            moved.state = "present"
    moved.tags, moved.notes = _annotations(src, dst, record, moved.warnings)
    moved.diagnoses = _diagnoses(src, dst, record, moved.warnings)
    try:
        keep(record, dst.store)  # a registry: tag the run's manifest so GC keeps it
    except ReproError as e:
        moved.warnings.append(f"the registry did not take run {record.id}'s manifest: {e}")
    return moved


def _same(record: RunRecord, dst: Side) -> None:
    theirs = dst.store.runs.get(record.id)
    if theirs.model_dump(mode="json") != record.model_dump(mode="json"):
        raise StoreError(f"run {record.id} is in {dst.name} ({dst.where}) with a different "
                         "record; nothing is overwritten (compare them with `repro show "
                         f"{record.id} --json` on each side)")


def _copy(src: Side, dst: Side, sha: str, what: str, verb: str, bar: Any) -> int:
    """One artifact, verified on the way; returns its size."""
    size = src.store.artifacts.size(sha)
    if size >= LARGE:
        bar.line(f"{verb} {what} ({human_size(size)})")
    upload = getattr(dst.store.artifacts, "upload", None)
    copy_file = getattr(dst.store.artifacts, "copy_file", None)
    try:
        if upload is not None and not src.store.artifacts.remote:
            upload(sha, src.store.artifacts.local_path(sha), bar.advance)  # the registry
            # checks the digest of what it receives
        elif copy_file is not None and not src.store.artifacts.remote:  # folder to folder
            copy_file(src.store.artifacts.local_path(sha), sha, what, bar.advance)
        else:
            dst.store.artifacts.put(_counted(src.store.artifacts.chunks(sha), bar.advance),
                                    expect=sha, name=what)
    except DigestMismatch as e:
        raise StoreError(f"the {what} in {src.name} is corrupt (its bytes hash to "
                         f"{e.got[:16]}..., not {sha[:16]}...): nothing copied; `repro fsck` "
                         "there names it") from None
    return size


def _counted(chunks: Iterator[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        advance(len(chunk))
        yield chunk


def _image_index(src: Side, dst: Side, record: RunRecord) -> None:
    """Where the image can be pulled from (registry digests known here) goes along."""
    image = record.resolved.image.digest
    known = {repo for repo, _ in dst.store.runs.pushes(image)}
    for repo, digest in src.store.runs.pushes(image):
        if repo not in known:
            dst.store.runs.add_push(image, repo, digest)


def _annotations(src: Side, dst: Side, record: RunRecord,
                 warnings: list[str]) -> tuple[int, int]:
    theirs = dst.store.runs.tags(record.id)
    new = {}
    for key, value in src.store.runs.tags(record.id).items():
        if key not in theirs:
            new[key] = value
        elif theirs[key] != value:
            warnings.append(f"tag {key} of run {record.id} is {theirs[key]!r} in {dst.name}, "
                            f"{value!r} in {src.name}: left as it is there")
    if new:
        dst.store.runs.set_tags(record.id, new)
    have = set(dst.store.runs.notes(record.id))
    notes = [n for n in src.store.runs.notes(record.id) if n not in have]
    for at, text in notes:
        dst.store.runs.add_note(record.id, text, at)
    return len(new), len(notes)


def _diagnoses(src: Side, dst: Side, record: RunRecord, warnings: list[str]) -> int:
    """The run's diagnoses (`repro diagnose`) the other store lacks, by when they were made.
    They name the replays each experiment ran, which travel only when copied themselves."""
    have = {(d.created_at, d.result) for d in dst.store.runs.diagnoses(record.id)}
    before = set(src.store.runs.damaged)
    new = [d for d in src.store.runs.diagnoses(record.id)  # each one's shape checked
           if d.run == record.id and (d.created_at, d.result) not in have]
    # a malformed one in the other store was left out by that read: said, not copied
    warnings += [why for key, why in src.store.runs.damaged.items() if key not in before]
    stored = 0
    for d in new:
        try:
            dst.store.runs.add_diagnosis(record.id, d)
            stored += 1
        except StoreError as e:  # another run's, or too large: said, not copied
            warnings.append(str(e))
    return stored


def image_pusher(engine_of: Callable[[], Any]) -> Callable[
        [RunRecord, Store, Callable[[str], None]], str | None]:
    """Pushes a run's image by digest to the registry the team's artifacts live in (tagged
    ``image-<id12>``) and records its repository digest there, once per image and registry.
    A folder needs none (the image travels as its archive); an image the engine no longer
    holds goes as its archive only."""

    def push(record: RunRecord, dst: Store, on_line: Callable[[str], None]) -> str | None:
        repo = getattr(dst.artifacts, "image_repository", None)  # a registry's
        if repo is None:
            return None
        image = record.resolved.image.digest
        for known, digest in dst.runs.pushes(image):
            if known == repo:
                return f"{repo}@{digest}"
        tag = f"image-{short(image)}"
        there = getattr(dst.artifacts, "image_pushed", lambda *_: None)(image, tag)
        if there is not None:  # pushed before (by anyone): only the index was missing
            dst.runs.add_push(image, repo, there)
            return f"{repo}@{there}"
        try:
            engine = engine_of()
            if engine.image(image) is None:
                on_line(f"image {short(image)} is not in this engine: it goes as its archive")
                return None
            digest = engine.push(image, repo, tag, on_line)
        except ReproError as e:
            on_line(f"warning: image {short(image)} not pushed ({e}); it goes as its archive")
            return None
        dst.runs.add_push(image, repo, digest)
        return f"{repo}@{digest}"

    return push

