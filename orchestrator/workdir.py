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
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

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


def lay_out(work: Path, snapshot: Path, mounts: dict[str, bool]) -> Path:
    """Copy the unpacked snapshot to ``work/code``, writable by the job (which runs as
    another user), with a mount point for each input mounted inside it (``mounts``: its
    relative path -> is a folder), and remember every entry's facts. Returns the folder."""
    dest = work / "code"
    _copy(snapshot, dest)
    for rel, is_dir in mounts.items():
        point = dest / rel
        if point.is_symlink() or point.is_file():
            point.unlink()  # the input hides what the snapshot holds there
        elif point.is_dir() and not is_dir:
            shutil.rmtree(point)
        for parent in reversed(point.relative_to(dest).parents[:-1]):
            _mkdir(dest / parent)
        if is_dir:
            _mkdir(point)
        else:
            point.touch(mode=0o666)
    baseline = {rel: list(facts) for rel, facts in _facts(dest)}
    (work / BASELINE).write_text(json.dumps(baseline))
    return dest


def _mkdir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir()
    os.chmod(path, 0o777)


def _copy(src: Path, dest: Path) -> None:
    """The tree at ``src`` (a checked snapshot: files, folders and links), every folder and
    file writable by anyone (the job is ``nobody``), times as in the snapshot."""
    dest.mkdir()
    os.chmod(dest, 0o777)
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src)
        out = dest if rel_root == "." else dest / rel_root
        for name in dirs:
            s = Path(root, name)
            if s.is_symlink():
                os.symlink(os.readlink(s), out / name)
                continue
            (out / name).mkdir()
            os.chmod(out / name, 0o777)
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
        for name in files:
            s, d = Path(root, name), out / name
            st = s.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
                continue
            shutil.copyfile(s, d)
            os.chmod(d, 0o777 if st.st_mode & 0o111 else 0o666)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _facts(top: Path) -> Iterable[tuple[str, Facts]]:
    for root, dirs, files in os.walk(top):
        for name in [*files, *(d for d in dirs if Path(root, d).is_symlink())]:
            path = Path(root, name)
            st = path.lstat()
            yield path.relative_to(top).as_posix(), (st.st_ino, st.st_size, st.st_mtime_ns,
                                                     st.st_ctime_ns)


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
