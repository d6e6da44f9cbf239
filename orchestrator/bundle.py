"""Portable runs: export a record (and what replay needs) to a bundle; import it elsewhere.

A bundle is a folder::

    manifest.json            {"schema_version": 1, "kind": "repro-bundle", "record": {...},
                              "series": {...}, "artifacts": {HEX: {"role", "size", "bundled"}}}
    artifacts/HEX            code snapshot, package lock, inputs (up to a size limit), the
                             image archive (its index and its layers, see image_archive.py),
                             outputs and logs (up to a size limit); each named by its sha256

``manifest.json`` is written last, so a folder without one is not a bundle.

Import is a trust boundary: a bundle arrives from another machine, in a pull request, from a
colleague. So the whole manifest is validated before anything is written (the strict record
model with its id and digest patterns, the shapes of environment and verdict, terminal
statuses only, names, counts, nesting and size); only artifacts the record refers to are
taken, each hashed while it is staged; they land in the store, and the record with them in
one transaction, only when every one checked out. An imported run is never owned by a
process here, an id that exists must be the identical record, and what the bundle asks of
this machine (network, secrets, resources) is decided at replay by the user, not by it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import settings
from .engine import ImageBackend
from .engine.image_archive import archive_of, member_digests, parse_index
from .engine.image_save import ensure_archived
from .errors import CannotReplay, UsageError
from .hashing import CHUNK, canonical_json, hex_of, shown
from .record import Finite, Hex64, RunRecord
from .store import Store
from .store.artifacts import DigestMismatch
from .untrusted import Untrusted, loads, name_problem, printable, read_file

BUNDLE_SCHEMA = 1
PROGRESS_MIN = 1 << 20  # artifacts at least this big get a progress line
MANIFEST_LIMIT = 32 << 20  # bytes of manifest.json
INDEX_LIMIT = 16 << 20  # bytes of an image archive index read from a bundle
SERIES_LIMIT = 1_000_000  # metric points a manifest may carry
ROLE = r"^(code|code-diff|lock|image|logs|(input|output|image-layer):[^\x00]{1,4096})$"


class ArtifactEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Annotated[str, Field(pattern=ROLE)]
    size: Annotated[int, Field(ge=0)] | None = None
    bundled: bool = False


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    kind: Literal["repro-bundle"]
    record: RunRecord
    series: dict[str, list[tuple[int, Finite]]] = {}
    artifacts: dict[Hex64, ArtifactEntry] = {}


# -- export -------------------------------------------------------------------------------------

def manifest_of(record: RunRecord, store: Store) -> dict[str, Any]:
    series = store.runs.steps(record.id)
    return {"schema_version": BUNDLE_SCHEMA, "kind": "repro-bundle",
            "record": record.model_dump(mode="json"),
            "series": {k: [[s, v] for s, v in pts] for k, pts in series.items()},
            "artifacts": {}}


def record_artifacts(record: RunRecord) -> dict[str, str]:
    """sha256 hex -> role of every artifact the record itself names (not the image)."""
    r = record.resolved
    found: dict[str, str] = {}
    found.setdefault(hex_of(r.code.snapshot), "code")
    if r.code.diff:
        found.setdefault(hex_of(r.code.diff), "code-diff")
    if r.packages:
        found.setdefault(r.packages.sha256, "lock")
    for name, inp in sorted(r.inputs.items()):
        if inp.kind == "file":
            found.setdefault(inp.sha256, f"input:{name}")
    for path, ref in sorted(record.outputs.items()):
        found.setdefault(ref.sha256, f"output:{path}")
    if record.logs is not None:
        found.setdefault(record.logs.sha256, "logs")
    return found


def needed_artifacts(record: RunRecord, store: Store) -> dict[str, dict[str, Any]]:
    """sha256 hex -> {role, size} of what a replay on a fresh machine needs, plus the run's
    outputs and logs (so the record is whole there too)."""
    need: dict[str, dict[str, Any]] = {}

    def add(hex_: str, role: str) -> None:
        size = store.artifacts.size(hex_) if store.artifacts.has(hex_) else None
        need.setdefault(hex_, {"role": role, "size": size})

    for hex_, role in record_artifacts(record).items():
        add(hex_, role)
    archive = archive_of(record.resolved.image, store)
    if archive:
        add(archive, "image")
        for member, sha in member_digests(archive, store):
            add(sha, f"image-layer:{member}")
    return need


def _left_out(meta: dict[str, Any], max_input: int | None, max_output: int | None) -> bool:
    role, size = meta["role"], meta["size"] or 0
    if role.startswith("input:"):
        return max_input is not None and size > max_input
    if role.startswith("output:") or role == "logs":
        return max_output is not None and size > max_output
    return False


def export_bundle(record: RunRecord, store: Store, engine: ImageBackend, dest: Path,
                  max_input_size: int | None, on_line: Callable[[str], None],
                  max_output_size: int | None = None) -> dict[str, Any]:
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"bundle folder {dest} is not empty; give a new folder")
    if archive_of(record.resolved.image, store) is None:
        if engine.image(record.resolved.image.digest) is None:
            raise CannotReplay(f"run {record.id}: image {shown(record.resolved.image.digest)}... "
                               "is neither archived in the store nor in the engine; a bundle "
                               "without it could not be replayed")
        ensure_archived(record.resolved.image.digest, store, engine, on_line)
    manifest = manifest_of(record, store)
    (dest / "artifacts").mkdir(parents=True, exist_ok=True)
    for hex_, meta in needed_artifacts(record, store).items():
        too_big = _left_out(meta, max_input_size, max_output_size)
        optional = meta["role"] == "code-diff" or meta["role"].startswith("output:") or \
            meta["role"] == "logs"
        if not store.artifacts.has(hex_) or too_big:
            meta["bundled"] = False
            if not too_big and not optional:
                raise CannotReplay(f"run {record.id}: {meta['role']} artifact {hex_[:16]}... is "
                                   "missing from the store; cannot export a replayable bundle")
        else:
            if (meta["size"] or 0) >= PROGRESS_MIN:  # small files are not worth a line
                on_line(f"bundling {meta['role']} ({(meta['size'] or 0) >> 20} MiB)")
            try:
                store.artifacts.copy_out(hex_, dest / "artifacts" / hex_)
            except DigestMismatch:
                raise CannotReplay(f"run {record.id}: {meta['role']} artifact {hex_[:16]}... "
                                   "is corrupt in the store; run `repro fsck`") from None
            meta["bundled"] = True
        manifest["artifacts"][hex_] = meta
    tmp = dest / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, dest / "manifest.json")
    return manifest


# -- import -------------------------------------------------------------------------------------

def read_manifest(path: Path) -> tuple[dict[str, Any], Path | None]:
    """(manifest document, bundle folder or None) from a bundle folder or a manifest file.
    The file is read without following a link in the bundle, capped in size and nesting."""
    folder = path if path.is_dir() else None
    file = path / "manifest.json" if folder else path.resolve()
    try:
        data = read_file(file, MANIFEST_LIMIT)
        if data is None:
            raise UsageError(f"{path}: no manifest.json; not a bundle made by `repro export "
                             "--bundle`")
        doc = loads(data, f"{file}")
    except Untrusted as e:
        raise UsageError(f"{file}: not a readable manifest ({e}); re-export the run") from None
    if not isinstance(doc, dict) or doc.get("kind") != "repro-bundle":
        raise UsageError(f"{file}: not a repro manifest (no kind: repro-bundle)")
    if doc.get("schema_version") != BUNDLE_SCHEMA:
        raise UsageError(f"{file}: manifest schema_version {doc.get('schema_version')!r} is "
                         f"not {BUNDLE_SCHEMA}; use the repro that exported it")
    if folder is None and (file.parent / "artifacts").is_dir():
        folder = file.parent
    return doc, folder


def validate_manifest(doc: dict[str, Any], path: Path) -> Manifest:
    """The manifest as the strict model plus the import policy; a UsageError naming the
    first bad field otherwise. Pure: nothing is read or written."""
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p)[:80] for p in first["loc"] if p != "[key]") or "manifest"
        if "[key]" in first["loc"]:
            where += " (the name)"
        raise UsageError(f"{path}: manifest is invalid at {printable(where)}: "
                         f"{first['msg'][:200]}; refusing it (re-export the run)") from None
    record = manifest.record

    def refuse(problem: str) -> UsageError:
        return UsageError(f"{path}: manifest record {record.id}: {problem}; refusing it")

    if not record.status.terminal:
        raise refuse(f"status is {record.status}; only finished runs can be imported")
    names = [("metric", n) for n in record.metrics] + [("param", n) for n in record.params]
    names += [("metric series", n) for n in manifest.series]
    for kind, name in names:
        problem = name_problem(name)
        if problem:
            raise refuse(f"{kind} name {name[:60]!r}: {problem}")
    if len(record.outputs) + len(record.skipped_outputs) > settings.max_outputs():
        raise refuse(f"it lists more than {settings.max_outputs()} outputs "
                     "(REPRO_MAX_OUTPUTS)")
    if sum(len(pts) for pts in manifest.series.values()) > SERIES_LIMIT:
        raise refuse(f"it carries more than {SERIES_LIMIT} metric points")
    if sum(1 for a in manifest.artifacts.values() if a.role == "image") > 1:
        raise refuse("it names more than one image archive")
    return manifest


def import_bundle(path: Path, store: Store, on_line: Callable[[str], None]) -> RunRecord:
    """Validate a bundle, then copy its artifacts (hash-checked) and record into the store;
    returns the record. Nothing is written unless all of it checks out."""
    doc, folder = read_manifest(path)
    manifest = validate_manifest(doc, path)
    record = manifest.record
    exists = store.runs.exists(record.id)
    if exists:
        mine = store.runs.get(record.id)
        if canonical_json(mine.model_dump(mode="json")) != canonical_json(
                record.model_dump(mode="json")):
            raise UsageError(f"{path}: run {record.id} is already in this store with a "
                             "different record; a bundle cannot take another run's id "
                             "(export it again from where it was recorded)")
    wanted = record_artifacts(record)
    index = None
    archive = record.resolved.image.archive or next(
        (h for h, a in manifest.artifacts.items() if a.role == "image"), None)
    members: list[tuple[str, str]] = []
    if archive is not None:
        wanted.setdefault(archive, "image")
        index = _archive_index(archive, manifest, folder, store, path)
        if index is not None:
            members = [(m["name"], m["sha256"]) for m in index["members"] if "sha256" in m]
            wanted.update({sha: f"image-layer:{name}" for name, sha in members
                           if sha not in wanted})
    taken = _stage_and_commit(wanted, manifest, folder, store, on_line)
    absent = [h for h in wanted if h not in taken and not store.artifacts.has(h)]
    image = None
    if archive is not None and store.artifacts.has(archive) and index is not None:
        image = (record.resolved.image.digest, archive, int(index["size"]))
    if exists:
        if image is not None:
            store.runs.add_image_archive_if_new(*image)
        return record
    steps = [(n, s, float(v)) for n, pts in manifest.series.items() for s, v in pts]
    store.runs.import_run(record, steps, str(path.resolve()), absent, image)
    return record


def _archive_index(archive: str, manifest: Manifest, folder: Path | None, store: Store,
                   path: Path) -> dict[str, Any] | None:
    """The image archive's index, from the store or the bundle (validated); None when it is
    in neither or is an archive stored whole (older stores)."""
    entry = manifest.artifacts.get(archive)
    data = None
    if store.artifacts.check(archive) == "ok":
        with store.artifacts.open(archive) as f:
            data = f.read(INDEX_LIMIT + 1)
    elif entry is not None and entry.bundled and folder is not None:
        try:
            data = read_file(folder / "artifacts" / archive, INDEX_LIMIT + 1)
        except Untrusted:
            data = None
    if data is None or len(data) > INDEX_LIMIT or not data.startswith(b"{"):
        return None
    try:
        return parse_index(data, f"image archive {archive[:16]}...")
    except CannotReplay as e:
        raise UsageError(f"{path}: {e}") from None


def _stage_and_commit(wanted: dict[str, str], manifest: Manifest, folder: Path | None,
                      store: Store, on_line: Callable[[str], None]) -> set[str]:
    """Hash every bundled artifact the record needs into the store's staging area; they all
    land together (a store copy that is corrupt is replaced). Returns what was taken."""
    taken: set[str] = set()
    if folder is None:
        return taken
    with store.artifacts.staging() as stage:
        for hex_, role in wanted.items():
            entry = manifest.artifacts.get(hex_)
            if entry is None or not entry.bundled:
                continue
            present = store.artifacts.has(hex_)
            if present and store.artifacts.check(hex_) == "ok":
                continue
            src = folder / "artifacts" / hex_
            try:
                fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                raise CannotReplay(f"bundle {folder}: artifacts/{hex_} ({_shown(role)}) is "
                                   "missing or not a plain file; re-export the run") from None
            with open(fd, "rb", buffering=CHUNK) as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise CannotReplay(f"bundle {folder}: artifacts/{hex_} is not a regular "
                                       "file; re-export the run")
                if st.st_size >= PROGRESS_MIN:
                    on_line(f"importing {_shown(role)} ({st.st_size >> 20} MiB)")
                try:
                    stage.put_stream(f, expect=hex_, name=f"artifacts/{hex_}", replace=present)
                except DigestMismatch as e:
                    raise CannotReplay(f"bundle {folder}: artifacts/{hex_} ({_shown(role)}) is "
                                       f"corrupt: its bytes hash to {e.got[:16]}...; re-export "
                                       "the run") from None
            if present:
                on_line(f"repaired {_shown(role)} ({hex_[:16]}...): the store's copy was "
                        "corrupt")
            taken.add(hex_)
    return taken


def _shown(role: str) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", role)[:200]
