"""The job's working folder: the project as its author runs it.

A run of layout ``project`` (every run launched since the layout was added) works in a
writable copy of its code snapshot, laid out as in the repository, at ``/repro/code``
(``/repro/outputs`` names the same folder, so specs and helpers written for the old layout
keep working). Relative paths (``open("data/names.txt")``, ``--data ./data``), in-repo
packages and ``python -m pkg.train`` work unchanged; an input with a ``mount`` appears at
that relative path, read-only. The run's outputs are what the job created or changed
there: the copy's files are ``lstat``-ed once laid out (inode, size, mtime and ctime; a job
cannot set a ctime back), so a file whose facts are the same afterwards was left alone.

Runs of layout ``outputs`` (recorded before) work in an empty ``/repro/outputs`` with the
code read-only at ``/repro/code``, and replay so.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from .errors import ReproError

PROJECT: Final = "project"
OUTPUTS: Final = "outputs"
CODE = "/repro/code"
BASELINE = "baseline.json"  # beside the copy in the run's work folder; never mounted

Facts = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def folder(work: Path, layout: str) -> Path:
    """Where a run's working folder is on this machine (its outputs are collected there)."""
    return work / ("code" if layout == PROJECT else "outputs")


def target(layout: str) -> str:
    """The job's working directory inside its container."""
    return CODE if layout == PROJECT else "/repro/outputs"


def lay_out(work: Path, snapshot: Path, mounts: dict[str, bool],
            placed: dict[str, Path] | None = None) -> Path:
    """Copy the unpacked snapshot to ``work/code``, writable by the job (which runs as
    another user), with a mount point for each input mounted inside it (``mounts``: its
    relative path -> is a folder), and ``placed`` files at their paths in it (a segment
    verify's checkpoint), and remember every entry's facts. Returns the folder."""
    dest = work / "code"
    _copy(snapshot, dest)
    for rel, source in (placed or {}).items():
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ReproError(f"{rel[:200]!r} is not a path inside the working folder; "
                             "refusing to place a file there")
        target = dest / rel
        for parent in reversed(target.relative_to(dest).parents[:-1]):
            _mkdir(dest / parent)  # never through a link of the snapshot's
        if os.path.lexists(target):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        shutil.copyfile(source, target)
        os.chmod(target, 0o666)
    for rel, is_dir in mounts.items():  # the input hides what the snapshot holds there
        point = dest / rel
        for parent in reversed(point.relative_to(dest).parents[:-1]):
            _mkdir(dest / parent)  # never through a link of the snapshot's
        if point.is_dir() and not point.is_symlink() and not is_dir:
            shutil.rmtree(point)
        if is_dir:
            _mkdir(point)
        else:
            if os.path.lexists(point):
                point.unlink()
            point.touch(mode=0o666)
    baseline = {rel: list(facts) for rel, facts in _facts(dest)}
    (work / BASELINE).write_text(json.dumps(baseline))
    return dest


def _mkdir(path: Path) -> None:
    """A real folder at ``path``, writable by the job: a link or a file there (the
    snapshot's) is replaced, never followed."""
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink()
    if not path.is_dir():
        path.mkdir()
    os.chmod(path, 0o777)


def _copy(src: Path, dest: Path) -> None:
    """The tree at ``src`` (a checked snapshot: files, folders and links), every folder and
    file writable by anyone (the job is ``nobody``), times as in the snapshot. Per file:
    one open of each side, sendfile, fchmod, futimes (creating files is what costs here:
    BENCHMARKS.md)."""
    dest.mkdir(parents=True)
    os.chmod(dest, 0o777)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    stack = [(src, dest)]
    while stack:
        s_dir, d_dir = stack.pop()
        with os.scandir(s_dir) as it:
            entries = list(it)
        for e in entries:
            d = os.path.join(d_dir, e.name)
            if e.is_symlink():
                os.symlink(os.readlink(e.path), d)
            elif e.is_dir(follow_symlinks=False):
                os.mkdir(d)
                os.chmod(d, 0o777)
                stack.append((Path(e.path), Path(d)))
            else:
                st = e.stat(follow_symlinks=False)
                with open(e.path, "rb") as fin:
                    fd = os.open(d, flags, 0o600)
                    try:
                        left = st.st_size
                        while left > 0:
                            sent = os.sendfile(fd, fin.fileno(), None, min(left, 1 << 30))
                            if sent == 0:
                                break
                            left -= sent
                        os.fchmod(fd, 0o777 if st.st_mode & 0o111 else 0o666)
                        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                    finally:
                        os.close(fd)


def _facts(top: Path) -> Iterable[tuple[str, Facts]]:
    stack = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for e in it:
                rel = prefix + e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append((Path(e.path), rel + "/"))
                    continue
                st = e.stat(follow_symlinks=False)
                yield rel, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Untouched:
    """Whether a file of the working folder is as it was laid out (the job left it alone).
    Without a baseline (a folder of the old layout) every file is the job's."""

    def __init__(self, work: Path) -> None:
        self.facts: dict[str, Facts] = {}
        try:
            raw = json.loads((work / BASELINE).read_text())
        except (OSError, ValueError):
            return
        self.facts = {k: (v[0], v[1], v[2], v[3]) for k, v in raw.items()}

    def __call__(self, rel: str, st: os.stat_result) -> bool:
        return self.facts.get(rel) == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def __bool__(self) -> bool:
        return bool(self.facts)
