"""What a record store is, for the rest of repro: the seam a PostgreSQL backend implements.

Four small protocols, so each backend sees what it owes: the runs themselves (with the
status compare-and-set), their annotations, where imported runs came from (and sweeps), and
the index of image archives and pushes. Analysis reads (importance samples, sweep groups,
names) are SQL of each backend (``analysis.py``), not part of the seam; machine-local
state (caches, run owners) is never in a record store (``local.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ..record import RunRecord, RunStatus
from .query import Sort, Where

Steps = Iterable[tuple[str, int, float]]


class Runs(Protocol):
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

    def add_note(self, run_id: str, text: str) -> None: ...

    def notes(self, run_id: str) -> list[tuple[str, str]]: ...


class Provenance(Protocol):
    def import_run(self, record: RunRecord, steps: list[tuple[str, int, float]],
                   source: str, absent: list[str],
                   image_archive: tuple[str, str, int] | None) -> None: ...

    def origin(self, run_id: str) -> dict[str, Any] | None: ...

    def imported_absent(self) -> dict[str, set[str]]: ...

    def add_sweep(self, sweep_id: str, name: str, spec_path: str, plan: str) -> None: ...


class ImageIndex(Protocol):
    def image_archive(self, image_id: str) -> tuple[str, int] | None: ...

    def add_image_archive(self, image_id: str, sha256: str, size: int) -> None: ...

    def add_image_archive_if_new(self, image_id: str, sha256: str, size: int) -> None: ...

    def recipe_image(self, recipe_digest: str) -> str | None: ...

    def add_recipe_image(self, recipe_digest: str, image_id: str) -> None: ...

    def add_push(self, image_id: str, repository: str, digest: str) -> None: ...

    def pushes(self, image_id: str) -> list[tuple[str, str]]: ...


class RecordStore(Runs, Annotations, Provenance, ImageIndex, Protocol):
    """Everything a record store backend provides."""
