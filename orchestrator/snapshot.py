"""Code snapshots: a git work tree folder -> a deterministic tar in the artifact store.

The tar holds the files git knows about (tracked, plus untracked-but-not-ignored when the tree
is dirty and that is allowed), sorted, with owner, group and mtime zeroed and modes reduced to
0644/0755, so the same content always gives the same ``sha256:`` snapshot digest.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ResolveError
from .hashing import as_digest, hex_of, sha256_file, sha256_stream
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
    status = _git(repo, "status", "--porcelain", "-z", "--untracked-files=all", "--", subdir,
                  *never)
    changed = [e[3:] for e in status.split("\0") if len(e) > 3]
    dirty = bool(changed) or commit is None
    if dirty and not allow_dirty:
        sample = ", ".join(changed[:3]) or "no commit yet"
        raise ResolveError(f"code at {path} has uncommitted changes ({len(changed)} "
                           f"file(s): {sample}); commit them, or pass --allow-dirty to "
                           "record the diff with the run")
    cached = store.local.snapshot(str(repo), subdir, commit) if commit and not dirty else None
    files = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 subdir, *never).split("\0")
    rels = sorted({f for f in files if f and os.path.lexists(repo / f)
                   and not (repo / f).is_dir()})
    if cached and store.artifacts.has(cached):
        digest = as_digest(cached)
    else:
        digest = _store_tar(repo, rels, subdir, store)
        if commit and not dirty:
            store.local.remember_snapshot(str(repo), subdir, commit, hex_of(digest))
    diff = None
    if dirty:
        patch = _git(repo, "diff", "--binary", "HEAD", "--", subdir) if commit else ""
        untracked = [e[3:] for e in status.split("\0") if e.startswith("??")]
        text = patch + "".join(f"# untracked: {u}\n" for u in untracked)
        diff = as_digest(store.artifacts.put(text.encode(), name="code diff").sha256)
    ref = CodeRef(path=str(path), repo=str(repo), subdir=subdir, commit=commit, dirty=dirty,
                  snapshot=digest, diff=diff, files=len(rels))
    return Snapshot(ref=ref, source_date_epoch=epoch, extracted=extract(digest, store))


def _not_code(repo: Path, store: Store, recorded: Iterable[Path]) -> list[str]:
    """Pathspecs of what is never code: a store (``.repro/`` folders, and the store this run
    uses when it lives in the work tree), so an unignored store does not make code dirty,
    and what the run records by content anyway."""
    specs = [":(exclude,glob)**/.repro/**"]
    for path in (store.home, *recorded):
        try:
            rel = path.resolve().relative_to(repo).as_posix()
        except ValueError:
            continue
        if rel != ".":
            specs.append(f":(exclude,literal){rel}")
    return specs


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
    tmp = Path(tempfile.mkdtemp(dir=store.code_cache, prefix=".x-"))
    try:
        with store.artifacts.open(digest) as f:
            data = f if f.seekable() else io.BytesIO(f.read())
            with tarfile.open(fileobj=data, mode="r:") as tar:
                tar.extractall(tmp, filter="data")
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
