"""The persisted documents: ``ResolvedSpec`` and ``RunRecord`` (schema_version 1).

Replay is built from these alone, so everything that determines a run's result lives here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


def utc_now() -> str:
    """ISO 8601 UTC with a Z, millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


ALLOWED = {
    RunStatus.PENDING: {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.INTERRUPTED,
                        RunStatus.LOST},
    RunStatus.RUNNING: {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED,
                        RunStatus.TIMEOUT, RunStatus.LOST},
}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_Doc):
    ref: str | None = None  # what the spec said (tag, ref@digest) or the recipe's local tag
    digest: str  # the image ID (config digest) the container ran: sha256:...
    repo_digest: str | None = None  # registry manifest digest, when the image came from one
    recipe: str | None = None  # recipe folder, relative to the spec, when built from images/
    recipe_digest: str | None = None
    archive: str | None = None  # sha256 hex of its archive index in the store (image_archive.py)


class CodeRef(_Doc):
    path: str  # folder the snapshot was taken of
    repo: str | None = None  # git toplevel
    subdir: str = "."  # path of the snapshot inside the repo
    commit: str | None = None
    dirty: bool = False
    snapshot: str  # sha256:... of the deterministic tar in the artifact store
    diff: str | None = None  # sha256:... of `git diff HEAD` (plus untracked list) when dirty
    files: int = 0


class InputRef(_Doc):
    path: str
    kind: str = "file"  # file | dir
    sha256: str  # file: sha256 of the bytes; dir: sha256 of the canonical file manifest
    size: int
    stored: bool = False  # a copy is in the artifact store (file inputs under the limit)


class PackagesRef(_Doc):
    lock: str  # path as given
    sha256: str
    pins: dict[str, str]  # name (normalized) -> version


class ResourcesRef(_Doc):
    cpus: float
    threads: int
    memory: str
    memory_bytes: int
    gpus: dict[str, Any] | None = None  # {count, model, min_memory_gb}


class ResolvedSpec(_Doc):
    image: ImageRef
    code: CodeRef
    inputs: dict[str, InputRef] = {}
    packages: PackagesRef | None = None
    command: list[str]
    params: dict[str, Any] = {}
    seed: int
    env: dict[str, str] = {}  # everything set in the container except secret values
    secrets: list[str] = []  # names only; values are never recorded
    resources: ResourcesRef
    network: str = "none"
    timeout_s: float | None = None
    determinism: str = "strict"
    outputs: list[str] = ["**"]


class FileRef(_Doc):
    sha256: str
    size: int


class RunRecord(_Doc):
    schema_version: int = SCHEMA_VERSION
    id: str
    name: str
    status: RunStatus = RunStatus.PENDING
    exit_code: int | None = None
    reason: str | None = None  # why it ended as it did, one line
    spec: dict[str, Any]  # the spec as loaded (with --param overrides applied)
    spec_path: str | None = None
    spec_digest: str
    resolved: ResolvedSpec
    hermetic: bool = True  # False when the job had network access
    environment: dict[str, Any] = {"host": {}, "container": {}}
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    outputs: dict[str, FileRef] = {}
    skipped_outputs: dict[str, str] = {}  # path -> why it was not stored (symlink, ...)
    logs: FileRef | None = None
    stderr_tail: str = ""
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    replay_of: str | None = None
    sweep_id: str | None = None  # set when the run is one point of `repro sweep`
    verdict: dict[str, Any] | None = None
    warnings: list[str] = []
