"""A real PostgreSQL server for the tests: Debian's PostgreSQL 15 binaries, a fresh cluster in
a temporary folder, TCP on 127.0.0.1 with password (scram) authentication, stopped after.

The server refuses to run as root, so as root it runs as the ``postgres`` user (the folder is
handed to that user). ``scripts/ensure-postgres`` installs the binaries when they are missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

BIN = Path(os.environ.get("REPRO_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER, SUPERPASS = "postgres", "test-superuser-pass"


@dataclass
class PgServer:
    folder: Path
    port: int

    def url(self, user: str = SUPERUSER, password: str | None = SUPERPASS,
            db: str = "postgres") -> str:
        auth = quote(user) + (f":{quote(password)}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> None:
        """Run SQL as the superuser (autocommit: CREATE DATABASE cannot run in a
        transaction)."""
        import psycopg

        with psycopg.connect(self.url(db=db), autocommit=True) as conn:
            conn.execute(statement)

    def create_db(self, name: str, owner: str = SUPERUSER) -> str:
        self.sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return name

    def create_role(self, name: str, password: str) -> None:
        self.sql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")

    def stop(self) -> None:
        _as_owner([str(BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w",
                   "stop"], self.folder, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str], folder: Path, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=folder)


def start(base: Path) -> PgServer:
    """A new cluster under ``base`` (made reachable for the postgres user), started."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"{BIN}/initdb not found: run scripts/ensure-postgres")
    folder = base / "pg"
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        for p in [folder, *list(folder.parents)[:-1]]:  # each parent must be traversable
            if p.stat().st_mode & 0o001 == 0:
                p.chmod(p.stat().st_mode | 0o711)
        os.chown(folder, pg.pw_uid, pg.pw_gid)
    pwfile = folder / "pw"
    pwfile.write_text(SUPERPASS + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    _as_owner([str(BIN / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER,
               f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
               "--locale=C.UTF-8", "--no-sync"], folder)
    port = _free_port()
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={folder} -c fsync=off -c max_connections=200")
    done = _as_owner([str(BIN / "pg_ctl"), "-D", str(folder / "data"), "-l",
                      str(folder / "log"), "-o", opts, "-w", "-t", "60", "start"], folder,
                     check=False)
    if done.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        raise RuntimeError(f"postgres did not start: {done.stderr} {log[-2000:]}")
    server = PgServer(folder, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.sql("SELECT 1")
            return server
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
