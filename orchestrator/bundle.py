"""Portable runs: export a record (and what replay needs) to a bundle; import it elsewhere.

A bundle is a folder::

    manifest.json            {"schema_version": 1, "kind": "repro-bundle", "record": {...},
                              "series": {...}, "artifacts": {HEX: {"role", "size", "bundled"}}}
    artifacts/HEX            code snapshot, package lock, inputs (up to a size limit), the
                             image archive (its index and its layers, see image_archive.py);
                             each named by its sha256

``manifest.json`` is written last, so a folder without one is not a bundle. On import every
artifact is hashed while it is copied into the store; one that does not match its name is
reported as corrupt and nothing of the run is recorded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .engine import Engine
from .errors import CannotReplay, UsageError
from .hashing import CHUNK
from .image_archive import archive_of, ensure_archived, member_digests, read_index
from .record import RunRecord
from .store import Store
from .store.artifacts import DigestMismatch

BUNDLE_SCHEMA = 1
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PROGRESS_MIN = 1 << 20  # artifacts at least this big get a progress line


def manifest_of(record: RunRecord, store: Store) -> dict[str, Any]:
    series = store.runs.steps(record.id)
    return {"schema_version": BUNDLE_SCHEMA, "kind": "repro-bundle",
            "record": record.model_dump(mode="json"),
            "series": {k: [[s, v] for s, v in pts] for k, pts in series.items()},
            "artifacts": {}}


def needed_artifacts(record: RunRecord, store: Store) -> dict[str, dict[str, Any]]:
    """sha256 hex -> {role, size} of what a replay on a fresh machine needs."""
    r = record.resolved
    need: dict[str, dict[str, Any]] = {}

    def add(sha: str, role: str) -> None:
        hex_ = sha.removeprefix("sha256:")
        size = store.artifacts.path(hex_).stat().st_size if store.artifacts.has(hex_) else None
        need.setdefault(hex_, {"role": role, "size": size})

    add(r.code.snapshot, "code")
    if r.code.diff:
        add(r.code.diff, "code-diff")
    if r.packages:
        add(r.packages.sha256, "lock")
    for name, inp in r.inputs.items():
        if inp.kind == "file":
            add(inp.sha256, f"input:{name}")
    archive = archive_of(r.image, store)
    if archive:
        add(archive, "image")
        for member, sha in member_digests(archive, store):
            add(sha, f"image-layer:{member}")
    return need


def export_bundle(record: RunRecord, store: Store, engine: Engine, dest: Path,
                  max_input_size: int | None,
                  on_line: Callable[[str], None]) -> dict[str, Any]:
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"bundle folder {dest} is not empty; give a new folder")
    if archive_of(record.resolved.image, store) is None:
        if engine.image(record.resolved.image.digest) is None:
            raise CannotReplay(f"run {record.id}: image {record.resolved.image.digest[:19]}... "
                               "is neither archived in the store nor in the engine; a bundle "
                               "without it could not be replayed")
        ensure_archived(record.resolved.image.digest, store, engine, on_line)
    manifest = manifest_of(record, store)
    (dest / "artifacts").mkdir(parents=True, exist_ok=True)
    for hex_, meta in needed_artifacts(record, store).items():
        too_big = (meta["role"].startswith("input:") and max_input_size is not None
                   and (meta["size"] or 0) > max_input_size)
        if not store.artifacts.has(hex_) or too_big:
            meta["bundled"] = False
            if not too_big and meta["role"] != "code-diff":
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


def read_manifest(path: Path) -> tuple[dict[str, Any], Path | None]:
    """(manifest, bundle folder or None) from a bundle folder or a manifest file."""
    folder = path if path.is_dir() else None
    file = path / "manifest.json" if folder else path
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no manifest.json; not a bundle made by `repro export "
                         "--bundle`") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{file}: not a readable manifest ({e}); re-export the run") from None
    if not isinstance(doc, dict) or doc.get("kind") != "repro-bundle":
        raise UsageError(f"{file}: not a repro manifest (no kind: repro-bundle)")
    if doc.get("schema_version") != BUNDLE_SCHEMA:
        raise UsageError(f"{file}: manifest schema_version {doc.get('schema_version')!r} is "
                         f"not {BUNDLE_SCHEMA}; use the repro that exported it")
    if folder is None and (path.parent / "artifacts").is_dir():
        folder = path.parent
    return doc, folder


def import_bundle(path: Path, store: Store, on_line: Callable[[str], None]) -> RunRecord:
    """Copy a bundle's artifacts (hash-checked) and record into the store; returns the record."""
    doc, folder = read_manifest(path)
    try:
        record = RunRecord.model_validate(doc.get("record"))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: manifest record is invalid at {where}: {first['msg']}; "
                         "re-export the run") from None
    artifacts = doc.get("artifacts") or {}
    for hex_, meta in artifacts.items():
        if not HEX64.match(str(hex_)):
            raise UsageError(f"{path}: manifest names an artifact {str(hex_)[:80]!r} that is "
                             "not a sha256; refusing it")
        if store.artifacts.has(hex_) or not (meta or {}).get("bundled") or folder is None:
            continue
        src = folder / "artifacts" / hex_
        if not src.is_file():
            raise CannotReplay(f"bundle {folder}: artifacts/{hex_} ({meta.get('role')}) is "
                               "missing; re-export the run")
        if src.stat().st_size >= PROGRESS_MIN:
            on_line(f"importing {meta.get('role')} ({src.stat().st_size >> 20} MiB)")
        try:
            with open(src, "rb", buffering=CHUNK) as f:
                _, size = store.artifacts.put_stream(f, name=str(src), expect=hex_)
        except DigestMismatch as e:
            raise CannotReplay(f"bundle {folder}: artifacts/{hex_} ({meta.get('role')}) is "
                               f"corrupt: its bytes hash to {e.got[:16]}...; re-export the "
                               "run") from None
    image_archive = next((h for h, m in artifacts.items() if (m or {}).get("role") == "image"
                          and store.artifacts.has(h)), None)
    if image_archive is not None:
        index = read_index(image_archive, store)
        size = index["size"] if index else store.artifacts.path(image_archive).stat().st_size
        store.runs.add_image_archive(record.resolved.image.digest, image_archive, size)
    if not store.runs.exists(record.id):
        store.runs.insert(record)
        points = [(n, int(s), float(v)) for n, pts in (doc.get("series") or {}).items()
                  for s, v in pts]
        if points:
            store.runs.add_steps(record.id, points)
    return record
