"""The one way repro unpacks an archive: every member checked before anything is written,
whatever the Python patch level.

Python's ``tarfile`` data filter is only as safe as the interpreter's patch release (3.11.7
lacks the 2025 realpath fix of the CVE-2025-4517 family: a crafted chain of links let a
member land outside the destination). This extractor does not rely on it:

- names are plain relative paths (no absolute name, no ``..``, no empty or NUL part), at
  most ``Limits.depth`` deep and ``Limits.name_chars`` long, each at most once;
- only regular files, folders and symbolic links whose target stays inside the destination
  (resolved against the link's own folder); no hard links, devices, FIFOs or anything else;
- every folder on a member's way is opened with ``O_NOFOLLOW`` relative to the one above it
  (``dir_fd``), and files are created with ``O_EXCL | O_NOFOLLOW``, so no link, planted by
  an earlier member or already there, is ever followed while unpacking;
- member count, each member's size and the total are bounded, and the bytes actually
  written are counted (a header cannot lie its way past the limits).

A refused archive raises ``UnsafeArchive`` naming the member and why; what was unpacked so
far is the caller's to remove (it unpacks into a fresh folder and renames it on success).
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import CannotReplay

CHUNK = 1 << 20


class UnsafeArchive(CannotReplay):
    """An archive repro refuses to unpack (a member that would leave its folder, a kind it
    never unpacks, a limit passed)."""


@dataclass(frozen=True)
class Limits:
    members: int = 500_000
    member_bytes: int = 64 << 30
    total_bytes: int = 256 << 30
    name_chars: int = 4096
    depth: int = 128


def member_parts(name: str, limits: Limits = Limits()) -> list[str] | None:
    """``name`` as its path parts, or None when it is not a plain relative path."""
    if not name or len(name) > limits.name_chars or "\0" in name or name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or len(parts) > limits.depth:
        return None
    return parts


def link_stays_inside(parts: list[str], target: str) -> bool:
    """Does a link at ``parts`` pointing to ``target`` resolve inside the archive's root?"""
    if not target or target.startswith("/") or "\0" in target:
        return False
    depth = len(parts) - 1  # the link's own folder
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        depth = depth - 1 if piece == ".." else depth + 1
        if depth < 0:
            return False
    return True


def extract_tar(fileobj: IO[bytes], dest: Path, what: str,
                limits: Limits = Limits()) -> int:
    """Unpack the tar stream ``fileobj`` into the existing empty folder ``dest`` (member
    by member, in stream order); returns the number of members. ``what`` names the archive
    in errors (``code snapshot sha256:...``)."""
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    count, total = 0, 0
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for m in tar:
                count += 1
                if count > limits.members:
                    raise UnsafeArchive(f"{what}: more than {limits.members} members")
                parts = member_parts(m.name, limits)
                if parts is None:
                    raise UnsafeArchive(f"{what}: member {m.name[:200]!r} is not a plain "
                                        "relative path (absolute, '..', or empty)")
                key = "/".join(parts)
                if key in seen:
                    raise UnsafeArchive(f"{what}: member {key!r} appears twice")
                seen.add(key)
                total += _one(tar, m, parts, root, what, limits, total)
    except (tarfile.TarError, OSError, ValueError, UnicodeError, OverflowError, EOFError) as e:
        if isinstance(e, UnsafeArchive):
            raise
        raise UnsafeArchive(f"{what}: not a readable archive ({e})") from None
    finally:
        os.close(root)
    return count


def _one(tar: tarfile.TarFile, m: tarfile.TarInfo, parts: list[str], root: int, what: str,
         limits: Limits, total: int) -> int:
    """Write one member; returns the bytes it wrote."""
    key = "/".join(parts)
    if not (m.isreg() or m.isdir() or m.issym()):
        kind = "a hard link" if m.islnk() else "a device or FIFO" if (
            m.ischr() or m.isblk() or m.isfifo()) else f"of type {m.type!r}"
        raise UnsafeArchive(f"{what}: member {key!r} is {kind}; only files, folders and links "
                            "inside it are unpacked")
    parent = _folder(root, parts[:-1], what, key)
    try:
        name = parts[-1]
        if m.isdir():
            _mkdir(parent, name, what, key)
            return 0
        if m.issym():
            if not link_stays_inside(parts, m.linkname):
                raise UnsafeArchive(f"{what}: link {key!r} -> {m.linkname[:200]!r} leaves the "
                                    "archive's folder")
            os.symlink(m.linkname, name, dir_fd=parent)
            return 0
        if m.size > limits.member_bytes or total + m.size > limits.total_bytes:
            raise UnsafeArchive(f"{what}: member {key!r} ({m.size} bytes) passes the size "
                                f"limit ({limits.member_bytes} a member, {limits.total_bytes} "
                                "in all)")
        src = tar.extractfile(m)
        if src is None:
            raise UnsafeArchive(f"{what}: member {key!r} has no data")
        mode = 0o755 if m.mode & 0o111 else 0o644
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=parent)
        written = 0
        try:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > m.size:
                    raise UnsafeArchive(f"{what}: member {key!r} holds more than it says")
                os.write(fd, chunk)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return written
    finally:
        if parent != root:
            os.close(parent)


def _folder(root: int, parts: list[str], what: str, key: str) -> int:
    """An fd of the folder ``parts`` below ``root``, each step opened without following a
    link (created when missing)."""
    fd = root
    for part in parts:
        _mkdir(fd, part, what, key)
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
        except OSError:
            if fd != root:
                os.close(fd)
            raise UnsafeArchive(f"{what}: member {key!r} goes through {part!r}, which is not a "
                                "folder (a link or a file)") from None
        if fd != root:
            os.close(fd)
        fd = nxt
    return fd


def _mkdir(parent: int, name: str, what: str, key: str) -> None:
    """A folder ``name`` in ``parent`` (there already is fine: a member's path made it)."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"{what}: member {key!r} needs {name!r} to be a folder, but "
                                "the archive made it a link or a file") from None


def check_zip(path: Path, what: str, max_bytes: int, max_members: int = 10_000) -> None:
    """A zip (an ``.npz``) read only after its directory is checked: at most
    ``max_members`` members of plain relative names, ``max_bytes`` once decompressed in
    all (the declared sizes are what ``zipfile`` will read at most: a lying header cannot
    push it past them). Raises UnsafeArchive."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UnsafeArchive(f"{what}: not a readable zip ({e})") from None
    if len(infos) > max_members:
        raise UnsafeArchive(f"{what}: more than {max_members} members")
    total = 0
    for info in infos:
        if member_parts(info.filename) is None:
            raise UnsafeArchive(f"{what}: member {info.filename[:200]!r} is not a plain "
                                "relative path")
        total += info.file_size
        if total > max_bytes:
            raise UnsafeArchive(f"{what}: decompresses to more than {max_bytes >> 20} MiB")
