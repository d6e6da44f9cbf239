"""Machine-local state: what must never be shared with a team store.

``REPRO_HOME/local.db`` (SQLite) holds the input hash cache (keyed by this machine's paths),
the code-snapshot cache (repository folder and commit -> snapshot digest), the owners of
the runs this machine is running (host, boot id, pid and the pid's start time), each image's
facts as repro captured them, and the runs this machine's users launched here (every other
run is foreign: replayed with only what the verifier grants, wherever it came from: a team
store, an import, a pull, a bundle). A shared
record store (a team's PostgreSQL) would be wrong for each: paths and pids mean nothing on
another machine. Stores written before this split kept them in ``repro.db``; the first open
copies them here (migration 6 then drops them there).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

from ..errors import StoreError
from .db import setup_lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS hash_cache (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    repo TEXT NOT NULL, subdir TEXT NOT NULL, commit_id TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (repo, subdir, commit_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_owners (
    run_id TEXT PRIMARY KEY, host TEXT NOT NULL, boot_id TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS launched (
    run_id TEXT NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (run_id, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS image_facts (key TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID
"""

Owner = tuple[str, str, int, str]  # host, boot id, pid, pid start
VERSION = 3  # 1: caches and owners; 2: the runs launched here; 3: images' facts


class LocalState:
    def __init__(self, path: Path, legacy: Path | None = None) -> None:
        self.path = path
        self.upgraded_from: int | None = None  # the version this open set up from, if any
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 30000")
            if self.db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
                with setup_lock(path):
                    self._setup(legacy)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"machine-local state {path} is unusable: {e}; remove it (it "
                             "holds only caches and the runs this machine is running)") from e

    def _setup(self, legacy: Path | None) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        if current >= VERSION:
            return  # another process set it up while we waited for the lock
        self.upgraded_from = current
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                self.db.execute(statement)
            if current == 0 and legacy is not None and legacy.exists():
                try:
                    self._copy_legacy(legacy)
                except sqlite3.DatabaseError:
                    pass  # an unusable repro.db is reported when the records are opened
            self.db.execute(f"PRAGMA user_version = {VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _copy_legacy(self, legacy: Path) -> None:
        """Owners and caches that a store from before the split kept in ``repro.db``."""
        self.db.execute("ATTACH DATABASE ? AS old", (str(legacy),))
        try:
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM old.sqlite_master WHERE type = 'table'")}
            if "run_owners" in tables:
                self.db.execute("INSERT OR IGNORE INTO run_owners SELECT * FROM old.run_owners")
            if "hash_cache" in tables:
                self.db.execute("INSERT OR IGNORE INTO hash_cache SELECT * FROM old.hash_cache "
                                "WHERE path NOT LIKE 'code:%'")
        finally:
            self.db.execute("DETACH DATABASE old")

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"machine-local state {self.path}: {e}") from e

    # -- input hash cache: (path, size, mtime, inode) -> sha256 -------------------------------

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        row = self.db.execute("SELECT sha256 FROM hash_cache WHERE path=? AND size=? AND "
                              "mtime_ns=? AND inode=?", (path, size, mtime_ns, inode)).fetchone()
        return row[0] if row else None

    def cache_hash(self, path: str, size: int, mtime_ns: int, inode: int, sha256: str) -> None:
        self._write("INSERT OR REPLACE INTO hash_cache VALUES (?, ?, ?, ?, ?)",
                    (path, size, mtime_ns, inode, sha256))

    # -- code snapshots: (repository folder, subfolder, commit) -> snapshot digest --------------

    def snapshot(self, repo: str, subdir: str, commit: str) -> str | None:
        row = self.db.execute("SELECT digest FROM snapshots WHERE repo=? AND subdir=? AND "
                              "commit_id=?", (repo, subdir, commit)).fetchone()
        return row[0] if row else None

    def remember_snapshot(self, repo: str, subdir: str, commit: str, digest: str) -> None:
        self._write("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?)",
                    (repo, subdir, commit, digest))

    # -- an image's facts (OS, Python, packages, the lock checked), as repro captured them ---

    def image_facts(self, key: str) -> str | None:
        row = self.db.execute("SELECT doc FROM image_facts WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def remember_image_facts(self, key: str, doc: str) -> None:
        self._write("INSERT OR REPLACE INTO image_facts VALUES (?, ?)", (key, doc))

    # -- the runs launched here: every other run is foreign ---------------------------------

    def note_launched(self, run_id: str) -> None:
        self._write("INSERT OR IGNORE INTO launched VALUES (?, ?)", (run_id, os.getuid()))

    def note_launched_all(self, run_ids: list[str]) -> None:
        """Runs this home's own store holds from before the launched set was kept (all but
        those imported or pulled): launched here (the one trust decision of an upgrade)."""
        try:
            self.db.executemany("INSERT OR IGNORE INTO launched VALUES (?, ?)",
                                [(r, os.getuid()) for r in run_ids])
        except sqlite3.DatabaseError as e:
            raise StoreError(f"machine-local state {self.path}: {e}") from e

    def launched_here(self, run_id: str) -> bool:
        """Did this machine's current user launch ``run_id`` here?"""
        return self.db.execute("SELECT 1 FROM launched WHERE run_id = ? AND uid = ?",
                               (run_id, os.getuid())).fetchone() is not None

    # -- the runs this machine runs --------------------------------------------------------------

    def own(self, run_id: str) -> None:
        """Note this process as the one running ``run_id`` (before the run is recorded, so a
        recorded unfinished run of this machine always has an owner to check)."""
        self._write("INSERT OR REPLACE INTO run_owners VALUES (?, ?, ?, ?, ?)",
                    (run_id, *process_identity()))

    def release(self, run_id: str) -> None:
        self._write("DELETE FROM run_owners WHERE run_id = ?", (run_id,))

    def owner(self, run_id: str) -> Owner | None:
        row = self.db.execute("SELECT host, boot_id, pid, pid_start FROM run_owners WHERE "
                              "run_id = ?", (run_id,)).fetchone()
        return (row[0], row[1], int(row[2]), row[3]) if row else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_identity() -> Owner:
    """(host, boot id, pid, pid start): a process, unambiguously, even after pid reuse."""
    pid = os.getpid()
    return socket.gethostname(), _boot_id(), pid, pid_start(pid) or ""


def owner_alive(owner: Owner) -> bool | None:
    """True/False for an owner on this host; None when it ran on another host (unknowable)."""
    host, boot, pid, start = owner
    if host != socket.gethostname():
        return None
    return boot == _boot_id() and pid_start(pid) == start
