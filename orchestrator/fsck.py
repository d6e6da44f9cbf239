"""`repro fsck`: every artifact a run refers to still exists and still hashes to its name."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .engine.image_archive import member_digests
from .errors import ReproError
from .hashing import hex_of
from .record import RunRecord
from .snapshot import cache_problems
from .store import Store
from .untrusted import HEX64, printable


def references(record: RunRecord, store: Store,
               layers: Callable[[str], list[tuple[str, str]]]) -> Iterator[tuple[str, str]]:
    """(what, sha256 hex) of every artifact ``record`` needs: outputs, logs, code, inputs,
    lock, image archive and its layers (``layers``: the archive's members, looked up)."""
    r = record.resolved
    for path, ref in sorted(record.outputs.items()):
        yield f"output {path}", ref.sha256
    if record.logs is not None:
        yield "logs", record.logs.sha256
    yield "code snapshot", hex_of(r.code.snapshot)
    if r.code.diff:
        yield "code diff", hex_of(r.code.diff)
    for name, inp in sorted(r.inputs.items()):
        if inp.stored:
            yield f"input {name}", inp.sha256
    if r.packages is not None:
        yield "package lock", r.packages.sha256
    archive = r.image.archive or (store.runs.image_archive(r.image.digest) or (None,))[0]
    if archive:
        yield "image archive", archive
        for member, sha in layers(archive):
            yield f"image layer {member}", sha


def keep(record: RunRecord, store: Store) -> None:
    """Tell a remote artifact store (a registry) everything a finished run needs, so it
    keeps it under the run's id; a folder needs nothing. A failure is a warning's worth:
    the artifacts are uploaded already, only the registry's garbage collection could miss
    them."""
    if not store.artifacts.remote:
        return

    def layers(archive: str) -> list[tuple[str, str]]:
        try:
            return member_digests(archive, store)
        except ReproError:
            return []

    needs: dict[str, int] = {}
    for _, sha in references(record, store, layers):
        if sha not in needs and store.artifacts.has(sha):
            needs[sha] = store.artifacts.size(sha)
    store.artifacts.keep_run(record.id, needs)


def check_artifact(store: Store, sha: str) -> str | None:
    """None when fine, else 'missing' or 'corrupt'."""
    verdict = store.artifacts.check(sha)
    return None if verdict == "ok" else verdict


def fsck(store: Store, on_line: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Hash every referenced artifact once; report each run and file that is broken, every
    record that does not parse, and unpacked code that no longer matches its snapshot (that
    copy is removed: it is unpacked again on next use). An artifact an imported run's bundle
    did not carry is counted, not a problem."""
    verdicts: dict[str, str | None] = {}
    problems: list[dict[str, Any]] = []
    runs = not_carried = 0
    indexes: dict[str, list[tuple[str, str]]] = {}  # many runs share one image archive
    absent = store.runs.imported_absent()

    def layers(archive: str) -> list[tuple[str, str]]:
        if archive not in indexes:
            try:
                indexes[archive] = member_digests(archive, store)
            except ReproError:
                indexes[archive] = []  # the archive itself is reported
        return indexes[archive]

    def problem(run: str | None, name: str | None, what: str, sha: str | None,
                why: str) -> None:
        problems.append({"run": run, "name": name, "what": what, "sha256": sha,
                         "problem": why})
        on_line(f"{f'run {run}: ' if run else ''}{what}"
                f"{f' ({sha[:16]}...)' if sha else ''} is {why}")

    for run_id in store.runs.ids():
        runs += 1
        try:
            record = store.runs.get(run_id)
        except ReproError as e:
            problem(printable(run_id[:40]), None, "record", None, f"unreadable: {e}")
            continue
        for what, sha in references(record, store, layers):
            if sha not in verdicts:
                verdicts[sha] = check_artifact(store, sha)
            if verdicts[sha] == "missing" and sha in absent.get(record.id, ()):
                not_carried += 1  # its bundle left it out; the record says what it was
            elif verdicts[sha]:
                problem(record.id, record.name, what, sha, str(verdicts[sha]))
    for folder in _code_caches(store):
        snapshot = folder.name
        if check_artifact(store, snapshot) is not None:  # reported with its runs above
            shutil.rmtree(folder, ignore_errors=True)  # and unusable without it
            continue
        changed = cache_problems(snapshot, folder, store)
        if changed:
            shutil.rmtree(folder, ignore_errors=True)
            problem(None, None, f"unpacked code {snapshot[:16]}...", None,
                    f"tampered: {'; '.join(changed[:3])} (removed)")
    return {"runs": runs, "artifacts": len(verdicts), "problems": problems,
            "not_carried": not_carried, "ok": not problems}


def _code_caches(store: Store) -> list[Path]:
    if not store.code_cache.is_dir():
        return []
    return sorted(p for p in store.code_cache.iterdir()
                  if HEX64.match(p.name) and p.is_dir() and not p.is_symlink())
