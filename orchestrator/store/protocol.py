"""What a record store is, for the rest of repro: the type every caller holds
(``Store.runs``), and the seam a backend implements (``RECORD_STORES``).

Small protocols, so each backend sees what it owes: the runs themselves (with the status
compare-and-set), their annotations, where imported runs came from (and sweeps), the index
of image archives and pushes, citations, and the analysis reads (importance samples, sweep
groups, names; SQL of each backend, ``analysis.py`` for ours). What differs between
backends is a capability (``shared``), never a dialect a caller tests. Machine-local state
(caches, run owners) is never in a record store (``local.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..record import Diagnosis, RunRecord, RunStatus
from .artifacts import Put, Source
from .query import Sort, Where

Steps = Iterable[tuple[str, int, float]]
Sweep = tuple[str, str, str | None, str, str]  # id, name, spec path, plan, created at


class Runs(Protocol):
    place: str
    """Where the records are, for messages: a folder, or a database URL without secrets."""

    @property
    def shared(self) -> bool:
        """A team's store: members write it, and each row says which member's role wrote
        it (``authors``); citations are made only there."""

    damaged: dict[str, str]
    """Rows a listing skipped because they do not parse (id: a one-line warning)."""

    @property
    def schema_version(self) -> int: ...

    def insert(self, record: RunRecord) -> None: ...

    def save(self, record: RunRecord, previous: RunStatus | None = None,
             steps: Steps = ()) -> None:
        """The whole record (and its series, in one transaction); with ``previous``, only if
        the stored status still is that (compare-and-set)."""

    def get(self, ref: str) -> RunRecord: ...

    def exists(self, run_id: str) -> bool: ...

    def remove(self, run_id: str) -> None: ...

    def query(self, where: Where | None = None, sort: Sort | None = None,
              limit: int | None = 50, offset: int = 0) -> list[RunRecord]: ...

    def query_count(self, where: Where) -> int: ...

    def query_ids(self, where: Where | None = None, sort: Sort | None = None,
                  limit: int | None = None) -> list[str]: ...

    def authors(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Who wrote each run's row, as the store knows them; empty where not ``shared``."""

    def ids(self) -> list[str]: ...

    def unfinished(self) -> list[RunRecord]: ...

    def replays_of(self, run_id: str) -> list[RunRecord]: ...

    def steps(self, run_id: str) -> dict[str, list[tuple[int, float]]]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class Annotations(Protocol):
    def set_tags(self, run_id: str, tags: dict[str, str], remove: Iterable[str] = ()) -> None:
        ...

    def tags(self, run_id: str) -> dict[str, str]: ...

    def tags_of(self, run_ids: list[str]) -> dict[str, dict[str, str]]: ...

    def add_note(self, run_id: str, text: str, at: str | None = None) -> None: ...

    def notes(self, run_id: str) -> list[tuple[str, str]]: ...

    def add_diagnosis(self, run_id: str, doc: Diagnosis) -> None: ...

    def diagnoses(self, run_id: str) -> list[Diagnosis]: ...


class Provenance(Protocol):
    def import_run(self, record: RunRecord, steps: list[tuple[str, int, float]],
                   source: str, absent: list[str],
                   image_archive: tuple[str, str, int] | None) -> None: ...

    def origin(self, run_id: str) -> dict[str, Any] | None: ...

    def imported_absent(self) -> dict[str, set[str]]: ...

    def add_sweep(self, sweep_id: str, name: str, spec_path: str, plan: str) -> None: ...

    def sweep(self, sweep_id: str) -> Sweep | None: ...

    def copy_in(self, record: RunRecord, steps: Steps, origin: dict[str, Any] | None,
                sweep: Sweep | None, image_archive: tuple[str, str, int] | None) -> None:
        """A finished run copied from another store (push/pull), in one transaction."""


class ImageIndex(Protocol):
    def image_archive(self, image_id: str) -> tuple[str, int] | None: ...

    def add_image_archive(self, image_id: str, sha256: str, size: int) -> None: ...

    def add_image_archive_if_new(self, image_id: str, sha256: str, size: int) -> None: ...

    def recipe_image(self, recipe_digest: str) -> str | None: ...

    def add_recipe_image(self, recipe_digest: str, image_id: str) -> None: ...

    def add_push(self, image_id: str, repository: str, digest: str) -> None: ...

    def pushes(self, image_id: str) -> list[tuple[str, str]]: ...


class Publications(Protocol):
    def publish(self, run_id: str, metric: str | None, value: float | None,
                cited_by: str) -> dict[str, Any]: ...

    def published(self, run_id: str) -> dict[str, Any] | None: ...

    def published_of(self, run_ids: list[str]) -> set[str]: ...


class AnalysisReads(Protocol):
    def sweep_groups(self, where: Where, metric: str | None = None, limit: int = 50,
                     offset: int = 0) -> tuple[int, list[dict[str, object]]]: ...

    def importance_samples(self, where: Where, metric: str, at_most: int | None = None
                           ) -> tuple[list[tuple[dict[str, object], float]], int]: ...

    def names(self) -> dict[str, list[str]]: ...


class RecordStore(Runs, Annotations, Provenance, ImageIndex, Publications, AnalysisReads,
                  Protocol):
    """Everything a record store backend provides."""


class Staging(Protocol):
    def put_stream(self, stream: BinaryIO, expect: str, name: str,
                   replace: bool = False) -> int: ...


class Artifacts(Protocol):
    """Where artifacts live, by sha256: a folder here or on a shared filesystem
    (``artifacts.ArtifactStore``) or an OCI registry behind a verified local cache
    (``oci.OciArtifactStore``). ``local_path`` always names a file on this machine."""

    remote: bool
    root: Path

    def has(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...

    def local_path(self, digest: str) -> Path: ...

    def check(self, digest: str) -> str: ...

    def put(self, source: Source, *, limit: int | None = None, expect: str | None = None,
            name: str = "artifact") -> Put: ...

    def staging(self) -> AbstractContextManager[Staging]:
        """Artifacts written together: all are kept when the block ends, none on an error."""

    def stale_temp_files(self) -> list[Path]: ...

    def keep_run(self, run_id: str, needs: dict[str, int]) -> None: ...

    def chunks(self, digest: str) -> Iterator[bytes]: ...

    def open(self, digest: str) -> BinaryIO: ...

    def copy_out(self, digest: str, dest: Path) -> None: ...
