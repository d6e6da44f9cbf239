"""`repro fsck`: every artifact a run refers to still exists and still hashes to its name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .hashing import hex_of, sha256_file
from .image_archive import member_digests
from .record import RunRecord
from .store import Store


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


def check_artifact(store: Store, sha: str) -> str | None:
    """None when fine, else 'missing' or 'corrupt'."""
    path = store.artifacts.path(sha)
    if not path.is_file():
        return "missing"
    return None if sha256_file(path)[0] == sha else "corrupt"


def fsck(store: Store, on_line: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Hash every referenced artifact once; report each run and file that is broken."""
    verdicts: dict[str, str | None] = {}
    problems = []
    runs = 0
    indexes: dict[str, list[tuple[str, str]]] = {}  # many runs share one image archive

    def layers(archive: str) -> list[tuple[str, str]]:
        if archive not in indexes:
            indexes[archive] = member_digests(archive, store)
        return indexes[archive]

    for record in store.runs.list(limit=None):
        runs += 1
        for what, sha in references(record, store, layers):
            if sha not in verdicts:
                verdicts[sha] = check_artifact(store, sha)
            if verdicts[sha]:
                problems.append({"run": record.id, "name": record.name, "what": what,
                                 "sha256": sha, "problem": verdicts[sha]})
                on_line(f"run {record.id}: {what} ({sha[:16]}...) is {verdicts[sha]}")
    return {"runs": runs, "artifacts": len(verdicts), "problems": problems,
            "ok": not problems}
