"""Code snapshots: a git work tree folder -> a deterministic tar in the artifact store.

The tar holds the files git knows about (tracked, plus untracked-but-not-ignored when the tree
is dirty and that is allowed), sorted, with owner, group and mtime zeroed and modes reduced to
0644/0755, so the same content always gives the same ``sha256:`` snapshot digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .archives import extract_tar
from .errors import ResolveError
from .hashing import as_digest, hex_of, sha256_file, sha256_stream, shown
from .record import CodeRef
from .store import Store


@dataclass
class Snapshot:
    ref: CodeRef
    source_date_epoch: int
    extracted: Path  # read-only copy mounted at /repro/code


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise _GitError(out.stderr.strip())
    return out.stdout


class _GitError(Exception):
    pass


def take(path: Path, store: Store, allow_dirty: bool,
         recorded: Iterable[Path] = ()) -> Snapshot:
    """Snapshot the code folder into the store. ``recorded``: files and folders the run
    records by content anyway (its spec, lock, image recipe): left out of the snapshot and
    of the dirty check, so a spec written by ``repro init`` runs before it is committed."""
    path = path.resolve()
    if not path.is_dir():
        raise ResolveError(f"code.path {path}: no such folder; point code.path at the job's "
                           "source folder")
    try:
        repo = Path(_git(path, "rev-parse", "--show-toplevel").strip())
    except (_GitError, FileNotFoundError):
        return _take_plain(path, store, allow_dirty)
    subdir = os.path.relpath(path, repo)
    try:
        commit = _git(repo, "rev-parse", "--verify", "-q", "HEAD").strip()
        epoch = int(_git(repo, "show", "-s", "--format=%ct", "HEAD").strip())
    except _GitError:
        commit, epoch = None, 0
    never = _not_code(repo, store, recorded)
    status = _git(repo, "status", "--porcelain", "-z", "--untracked-files=all", "--", subdir)
    changes = [(xy, rel) for xy, rel in _status_entries(status) if not never(rel)]
    changed = [rel for _, rel in changes]
    dirty = bool(changed) or commit is None
    if dirty and not allow_dirty:
        sample = ", ".join(changed[:3]) or "no commit yet"
        raise ResolveError(f"code at {path} has uncommitted changes ({len(changed)} "
                           f"file(s): {sample}); commit them, or pass --allow-dirty to "
                           "record the diff with the run")
    # what is left out is filtered here, not by git exclude pathspecs: git 2.39 lists
    # nothing at all for `ls-files -- SUBDIR ':(exclude,literal).repro'`
    files = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 subdir).split("\0")
    rels = sorted({f for f in files if f and not never(f) and os.path.lexists(repo / f)
                   and not (repo / f).is_dir()})
    if not rels:
        _refuse_empty(path, repo, never)
    key = f"{subdir}\0{never.key}" if never.key else subdir
    cached = store.local.snapshot(str(repo), key, commit) if commit and not dirty else None
    if cached and store.artifacts.has(cached):
        digest = as_digest(cached)
    else:
        digest = _store_tar(repo, rels, subdir, store)
        if commit and not dirty:
            store.local.remember_snapshot(str(repo), key, commit, hex_of(digest))
    diff = None
    if dirty:
        patch = _git(repo, "diff", "--binary", "HEAD", "--", subdir) if commit else ""
        untracked = [rel for xy, rel in changes if xy == "??"]
        text = patch + "".join(f"# untracked: {u}\n" for u in untracked)
        diff = as_digest(store.artifacts.put(text.encode(), name="code diff").sha256)
    ref = CodeRef(path=str(path), repo=str(repo), subdir=subdir, commit=commit, dirty=dirty,
                  snapshot=digest, diff=diff, files=len(rels))
    return Snapshot(ref=ref, source_date_epoch=epoch, extracted=extract(digest, store))


class _NotCode:
    """What is never code, as paths relative to the repository: a store (``.repro/``
    folders anywhere, and the store this run uses when it lives in the work tree), so an
    unignored store does not make code dirty, and what the run records by content anyway
    (its spec, lock, recipe, inputs)."""

    def __init__(self, prefixes: list[str]) -> None:
        self.prefixes = sorted(set(prefixes))
        # the snapshot cache is per set of exclusions: two specs of one commit may differ
        self.key = hashlib.sha256("\0".join(self.prefixes).encode()).hexdigest()[:16] \
            if self.prefixes else ""

    def __call__(self, rel: str) -> bool:
        parts = rel.split("/")
        if STORE_DIR in parts[:-1]:
            return True
        return any(rel == p or rel.startswith(p + "/") for p in self.prefixes)


STORE_DIR = ".repro"


def _not_code(repo: Path, store: Store, recorded: Iterable[Path]) -> _NotCode:
    prefixes = []
    for path in (store.home, *recorded):
        try:
            rel = path.resolve().relative_to(repo).as_posix()
        except ValueError:
            continue
        if rel != ".":
            prefixes.append(rel)
    return _NotCode(prefixes)


def _status_entries(status: str) -> list[tuple[str, str]]:
    """``git status --porcelain -z`` as (XY, path) pairs; a rename or copy names its new
    path (its old one follows as an entry of its own, which is skipped)."""
    entries = status.split("\0")
    out, i = [], 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        xy = entry[:2]
        out.append((xy, entry[3:]))
        if "R" in xy or "C" in xy:
            i += 1  # the original path
    return out


def _refuse_empty(path: Path, repo: Path, never: _NotCode) -> None:
    """A code folder that holds files but gives an empty snapshot: never run the job on
    nothing (it would fail with a confusing "file not found", or worse, succeed)."""
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d not in (".git", STORE_DIR)]
        rels = [Path(root, n).relative_to(repo).as_posix() for n in names]
        held = [r for r in rels if not never(r)]
        if held:
            raise ResolveError(
                f"code at {path} holds files ({held[0]}, ...) but git lists none of them, so "
                "the code snapshot would be empty; `git add` them (they may be ignored by "
                ".gitignore), or point code.path at the job's code")


def _take_plain(path: Path, store: Store, allow_dirty: bool) -> Snapshot:
    if not allow_dirty:
        raise ResolveError(f"code at {path} is not inside a git work tree; run `git init` and "
                           "commit it, or pass --allow-dirty to snapshot the folder as it is")
    rels: list[str] = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".repro"))
        rels.extend(os.path.relpath(os.path.join(root, n), path) for n in names)
    digest = _store_tar(path, sorted(rels), ".", store)
    ref = CodeRef(path=str(path), subdir=".", dirty=True, snapshot=digest, files=len(rels))
    return Snapshot(ref=ref, source_date_epoch=0, extracted=extract(digest, store))


def _store_tar(root: Path, rels: list[str], subdir: str, store: Store) -> str:
    """Deterministic tar of ``rels`` (paths under ``root``), names relative to ``subdir``."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in rels:
                _add(tar, root / rel, os.path.relpath(rel, subdir) if subdir != "." else rel)
        buf.seek(0)
        hex_ = store.artifacts.put(buf, name="code snapshot").sha256
    return as_digest(hex_)


def _add(tar: tarfile.TarFile, src: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    st = src.lstat()
    if src.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(src)
        info.mode = 0o777
        tar.addfile(info)
        return
    info.size = st.st_size
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    with open(src, "rb") as f:
        tar.addfile(info, f)


def extract(digest: str, store: Store) -> Path:
    """The snapshot unpacked once per digest under the store's cache (read by the container).
    A cached copy is checked against the snapshot before every use: an edited file there
    would otherwise run in place of the recorded code. A damaged copy is unpacked again."""
    dest = store.code_cache / hex_of(digest)
    if dest.is_dir():
        if not cache_problems(digest, dest, store):
            return dest
        stale = dest.with_name(f".stale-{dest.name}-{os.getpid()}")
        try:
            os.rename(dest, stale)
        except OSError:
            pass  # another process moved it first
        shutil.rmtree(stale, ignore_errors=True)
    store.code_cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=store.code_cache, prefix=f".x-{os.getpid()}-"))
    try:
        with store.artifacts.open(digest) as f:  # hostile when it came from elsewhere
            extract_tar(f, tmp, f"code snapshot {shown(digest)}")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:  # another launch extracted it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def cache_problems(digest: str, dest: Path, store: Store) -> list[str]:
    """How the unpacked copy at ``dest`` differs from the snapshot: files changed, missing
    or added (empty when it is the snapshot, byte for byte)."""
    expected: dict[str, tuple[str, str | int]] = {}  # name -> (kind, sha256 | link | 0)
    with store.artifacts.open(digest) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for m in tar:
            name = os.path.normpath(m.name)
            if m.isreg():
                data = tar.extractfile(m)
                assert data is not None
                expected[name] = ("file", sha256_stream(data)[0])  # type: ignore[arg-type]
            elif m.issym():
                expected[name] = ("link", m.linkname)
            elif m.isdir():
                expected[name] = ("dir", 0)
    implied = {str(p) for name in expected for p in Path(name).parents if str(p) != "."}
    problems = []
    for root, dirs, files in os.walk(dest):
        for name in [*dirs, *files]:
            path = Path(root, name)
            rel = os.path.relpath(path, dest)
            kind, want = expected.pop(rel, ("extra", 0))
            if kind == "extra":
                if rel in implied and path.is_dir() and not path.is_symlink():
                    continue  # a folder the tar only implies
                problems.append(f"{rel} is not in the snapshot")
            elif kind == "link":
                if not path.is_symlink() or os.readlink(path) != want:
                    problems.append(f"{rel} was changed")
            elif kind == "file":
                if path.is_symlink() or not path.is_file() or sha256_file(path)[0] != want:
                    problems.append(f"{rel} was changed")
    problems += [f"{rel} is missing" for rel, (kind, _) in expected.items() if kind != "dir"]
    return problems


def stale_extractions(store: Store) -> list[Path]:
    """Half-unpacked snapshots (``.x-PID-*``) and set-aside damaged copies (``.stale-*``)
    whose process is gone: a launch, replay or pull killed mid-way (SIGKILL runs no
    cleanup). Those of a process still alive are left to it; a name without a pid (an
    older repro's) only once a day old."""
    if not store.code_cache.is_dir():
        return []
    found = []
    for p in [*store.code_cache.glob(".x-*"), *store.code_cache.glob(".stale-*")]:
        pid = p.name.split("-")[1] if p.name.startswith(".x-") else p.name.rsplit("-", 1)[-1]
        try:
            age = time.time() - p.lstat().st_mtime
        except OSError:
            continue
        alive = pid.isdigit() and Path(f"/proc/{pid}").exists()
        if not alive and (pid.isdigit() or age > 86400):
            found.append(p)
    return found
