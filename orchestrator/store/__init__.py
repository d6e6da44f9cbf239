"""The store: run records (SQLite) + artifacts (content-addressed folder) under one home.

Home: ``REPRO_HOME``, else ``.repro/`` of the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..untrusted import RUN_ID
from .artifacts import ArtifactStore
from .runs import RunStore


def default_home() -> Path:
    from ..settings import home

    return home()


@dataclass
class Store:
    home: Path
    runs: RunStore
    artifacts: ArtifactStore

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def work_dir(self) -> Path:
        return self.home / "work"

    @property
    def code_cache(self) -> Path:
        return self.home / "cache" / "code"

    def log_path(self, run_id: str) -> Path:
        return self.logs_dir / f"{_checked(run_id)}.log"

    def work_path(self, run_id: str) -> Path:
        """The folder a run's container writes into (outputs, meta) while it runs."""
        return self.work_dir / _checked(run_id)

    def close(self) -> None:
        self.runs.close()


def _checked(run_id: str) -> str:
    """A run id about to become part of a path: 16 hex digits, nothing else (a record from
    elsewhere could hold ``../..``)."""
    if not RUN_ID.match(run_id):
        raise StoreError(f"run id {run_id[:80]!r} is not 16 hex digits; refusing to build a "
                         "path from it")
    return run_id


def open_store(home: Path | None = None, create: bool = True) -> Store:
    home = home or default_home()
    if not home.exists():
        if not create:
            raise StoreError(f"no store at {home}; launch a run first or set REPRO_HOME")
        try:
            home.mkdir(parents=True, exist_ok=True)  # another process may race us
        except OSError as e:
            raise StoreError(f"cannot create store at {home}: {e.strerror}; set REPRO_HOME "
                             "to a writable folder") from e
    for sub in ("artifacts", "logs", "work"):
        (home / sub).mkdir(exist_ok=True)
    return Store(home=home, runs=RunStore(home / "repro.db"),
                 artifacts=ArtifactStore(home / "artifacts"))
