"""The store: run records + artifacts (content-addressed) + this machine's local state.

Home: ``REPRO_HOME``, else ``.repro/`` of the working directory. Records are chosen by URL
(``REPRO_STORE``: a path, ``sqlite:///path`` or ``postgresql://user@host:port/db``; default
``HOME/repro.db``), each scheme a builder in ``RECORD_STORES``. Machine-local state (caches,
the owners of runs running here) is always ``HOME/local.db`` and never shared.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import StoreError, UsageError
from ..untrusted import RUN_ID
from .artifacts import ArtifactStore
from .db import safe_url
from .local import LocalState
from .runs import RunStore

if TYPE_CHECKING:
    from .protocol import Artifacts, RecordStore


def default_home() -> Path:
    from ..settings import home

    return home()


@dataclass
class Store:
    home: Path
    runs: RecordStore
    artifacts: Artifacts
    local: LocalState
    records_here: bool = True  # the records are this home's own SQLite file (not shared)

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
        self.local.close()


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
            home.parent.mkdir(parents=True, exist_ok=True)
            home.mkdir(mode=0o700, exist_ok=True)  # another process may race us
        except OSError as e:
            raise StoreError(f"cannot create store at {home}: {e.strerror}; set REPRO_HOME "
                             "to a writable folder") from e
    for sub in ("artifacts", "logs", "work"):
        (home / sub).mkdir(mode=0o700, exist_ok=True)
    _private(home / "work")
    url = os.environ.get("REPRO_STORE", "").strip() or str(home / "repro.db")
    local = LocalState(home / "local.db", legacy=home / "repro.db")  # before the records'
    # migrations: it copies what a store from before the split kept in repro.db
    store = Store(home=home, runs=records(url), artifacts=artifacts(home), local=local,
                  records_here=_is_home_db(url, home))
    if local.upgraded_from is not None and store.records_here:
        # runs recorded before this machine kept the set it launched: its own store's runs,
        # but those imported or pulled, were launched here
        imported = set(store.runs.imported_absent())
        local.note_launched_all([r for r in store.runs.ids() if r not in imported])
    return store


def _private(folder: Path) -> None:
    """Only this user reaches ``folder`` (running jobs write there; the engine mounts their
    folders, so no one else needs a path to them). A store from before this was made
    private is made so here; a folder of another user is refused."""
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise StoreError(f"{folder} is not a folder of this user; running jobs write there: "
                         "remove it, or set REPRO_HOME to a store of your own")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)


def _is_home_db(url: str, home: Path) -> bool:
    """Is the record store at ``url`` this home's own SQLite file (not a team's)?"""
    if "://" in url and not url.startswith("sqlite:"):
        return False
    path = Path(urlparse(url).path if url.startswith("sqlite:") else url).expanduser()
    try:
        return path.resolve() == (home / "repro.db").resolve()
    except OSError:
        return False


def open_team(local: Store, store_url: str, artifacts_url: str) -> Store:
    """The other side of `repro push`/`pull`: the team's records and artifacts, named by URL
    (a registry's downloads are cached, verified, under this home)."""
    here = os.environ.get("REPRO_STORE", "").strip() or str(local.home / "repro.db")
    if store_url == here:
        raise UsageError(f"the team store {safe_url(store_url)} is the store this command "
                         "uses already (REPRO_STORE): runs launched here are in it")
    runs = records(store_url)
    try:
        return Store(home=local.home, runs=runs,
                     artifacts=artifacts(local.home, artifacts_url, "the team's artifacts"),
                     local=local.local)
    except BaseException:
        runs.close()
        raise


def artifacts(home: Path, raw: str | None = None, what: str = "REPRO_ARTIFACTS") -> Artifacts:
    """The artifact store ``REPRO_ARTIFACTS`` (or ``raw``) names: a path or ``file:///PATH``
    (a folder on a filesystem the team shares), ``oci://HOST[:PORT]/REPO`` (an OCI registry,
    behind a verified cache in ``HOME/cache/artifacts``), else ``HOME/artifacts``."""
    if raw is None:
        raw = os.environ.get("REPRO_ARTIFACTS", "").strip()
    if not raw:
        return ArtifactStore(home / "artifacts")
    scheme = urlparse(raw).scheme if "://" in raw else ""
    if scheme in ("", "file"):
        path = Path(urlparse(raw).path if scheme else raw).expanduser()
        if not path.is_dir():
            raise StoreError(f"{what} {raw}: no such folder; create it (on the shared "
                             "filesystem) or give another")
        return ArtifactStore(path, shared=True)
    if scheme == "oci":
        from .oci import OciArtifactStore

        return OciArtifactStore(raw, ArtifactStore(home / "cache" / "artifacts"))
    raise UsageError(f"REPRO_ARTIFACTS {safe_url(raw)!r}: unknown scheme {scheme!r}; use a "
                     "path, file:///PATH or oci://HOST[:PORT]/REPOSITORY")


def _sqlite(url: str) -> RunStore:
    path = urlparse(url).path if url.startswith("sqlite:") else url
    if path.startswith("//"):  # sqlite:////abs/path, SQLAlchemy's spelling
        path = "/" + path.lstrip("/")
    if not path:
        raise UsageError(f"REPRO_STORE {url!r}: give a path, e.g. sqlite:///srv/repro.db")
    return RunStore.sqlite(Path(path).expanduser())


def _postgresql(url: str) -> RunStore:
    return RunStore.postgresql(url)


RECORD_STORES: dict[str, Callable[[str], RecordStore]] = {
    "sqlite": _sqlite, "": _sqlite, "postgresql": _postgresql, "postgres": _postgresql}


def records(url: str) -> RecordStore:
    """The record store a URL names: a path, sqlite:///path or postgresql://..."""
    scheme = urlparse(url).scheme if "://" in url or url.startswith("sqlite:") else ""
    if scheme not in RECORD_STORES:
        known = ", ".join(f"{s}://" for s in sorted(RECORD_STORES) if s)
        raise UsageError(f"REPRO_STORE {url!r}: unknown scheme {scheme!r}; use a path or "
                         f"one of: {known}")
    return RECORD_STORES[scheme](url)
