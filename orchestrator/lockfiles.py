"""A project's own lock (``uv.lock``, ``poetry.lock``, ``pdm.lock``) as repro's hash-pinned
lock, without the tool that wrote it and without resolving anything again.

What the project's main dependencies need on the image's platform is read from the lock:
uv's dependency graph is walked from the project (dev groups and unrequested extras left
out), poetry's and pdm's packages are taken by their groups (``main``/``default``); every
environment marker is evaluated for the image's Python and platform (``environment``, read
inside the image). Each package becomes ``NAME==VERSION`` with every hash the lock lists for
that version (its sdist and wheels), so ``pip --require-hashes`` installs exactly the files
the lock allows. Packages that come from git, a path or a URL cannot be hash-pinned from an
index: they are named in one error. The project itself (and workspace members) are code:
they are on the job's path from the snapshot, not installed.

Lock files are the project's text, read with a size cap; nothing here runs project code.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

LOCKS = ("uv.lock", "poetry.lock", "pdm.lock")
NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")  # PEP 508
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")  # what PEP 440 versions are made of
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)  # sha256 hex


@dataclass
class Locked:
    """What a project's lock pins for the image: ``pins``, and what it left out and why."""

    source: str  # uv.lock, poetry.lock, pdm.lock
    pins: list[Pin]
    skipped: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read(root: Path, name: str, text: str, env: dict[str, str]) -> Locked:
    """The pins of the lock ``name`` (relative to ``root``; its ``text``) for the marker
    environment ``env``."""
    path = root / name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not a TOML lock file ({e}); regenerate it with its tool, "
                         "or pass --deps requirements.txt") from None
    reader = {"uv.lock": _uv, "poetry.lock": _poetry, "pdm.lock": _pdm}[path.name]
    locked = reader(doc, env, path, _pyproject(path.parent))
    odd = [p for p in locked.pins if not NAME.fullmatch(p.name) or not VERSION.fullmatch(p.version)]
    if odd:
        raise UsageError(f"{path}: {odd[0].name[:60]!r} {odd[0].version[:60]!r} is not a "
                         "package name and version; regenerate the lock with its tool")
    bad = [p.name for p in locked.pins if not p.hashes]
    if bad:
        raise UsageError(f"{root / name}: {', '.join(sorted(bad))} come(s) from git, a path or a "
                         "URL, not an index: a hash-pinned lock cannot hold them; publish them "
                         "to an index or vendor them into the project")
    locked.pins.sort(key=lambda p: normalize(p.name))
    return locked


def lock_text(locked: Locked) -> str:
    lines = [f"{p.name}=={p.version} \\\n" + " \\\n".join(
        f"    --hash=sha256:{h}" for h in sorted(set(p.hashes))) for p in locked.pins]
    return (f"# Pinned from {locked.source} for the image's Python and platform (every hash "
            "the lock lists);\n# installed with pip --require-hashes. Regenerate: repro init "
            "--force\n" + "\n".join(lines) + "\n")


def _pyproject(root: Path) -> dict[str, Any]:
    from .projectscan import read_text

    text = read_text(root, "pyproject.toml")  # never a FIFO, a device or a link out
    try:
        return tomllib.loads(text) if text is not None else {}
    except tomllib.TOMLDecodeError:
        return {}


def _marker_holds(marker: Any, env: dict[str, str]) -> bool:
    if not marker or not isinstance(marker, str):
        return True
    from packaging.markers import InvalidMarker, Marker

    try:
        return bool(Marker(marker).evaluate({**env, "extra": ""}))
    except (InvalidMarker, ValueError, KeyError):
        return True  # unreadable: keep it (pip still checks the files it is given)


def _hashes(files: Any) -> list[str]:
    """The sha256 hashes a lock lists for a package's files (64 hex digits each: anything
    else never reaches the lock's text)."""
    out = []
    for f in files or []:
        h = f.get("hash") if isinstance(f, dict) else None
        if isinstance(h, str) and HASH.fullmatch(h):
            out.append(h.removeprefix("sha256:"))
    return out


# -- uv -----------------------------------------------------------------------------------

def _uv(doc: dict[str, Any], env: dict[str, str], path: Path,
        pyproject: dict[str, Any]) -> Locked:
    packages = [p for p in doc.get("package") or [] if isinstance(p, dict)]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in packages:
        by_name.setdefault(normalize(str(p.get("name", ""))), []).append(p)
    project = normalize(str((pyproject.get("project") or {}).get("name", "")))
    roots = [p for p in packages if _uv_is_code(p)]
    root = next((p for p in roots if normalize(str(p.get("name"))) == project),
                roots[0] if len(roots) == 1 else None)
    if root is None:
        raise UsageError(f"{path}: cannot tell which package is this project (no editable or "
                         "virtual source '.'); pass --deps requirements.txt")
    skipped = [f"{p.get('name')} (workspace member: on the job's path from the snapshot)"
               for p in roots if p is not root]
    pins: dict[tuple[str, str], Pin] = {}
    seen: set[tuple[str, str, frozenset[str]]] = set()
    todo: list[tuple[dict[str, Any], frozenset[str]]] = [(root, frozenset())]
    while todo:
        pkg, extras = todo.pop()
        key = (normalize(str(pkg.get("name"))), str(pkg.get("version")), extras)
        if key in seen:
            continue
        seen.add(key)
        if pkg is not root and not _uv_is_code(pkg):
            files = [pkg.get("sdist") or {}, *(pkg.get("wheels") or [])]
            pins.setdefault(key[:2], Pin(str(pkg.get("name")), str(pkg.get("version")),
                                         _hashes(files)))
        edges = list(pkg.get("dependencies") or [])
        for extra in extras:
            edges += list((pkg.get("optional-dependencies") or {}).get(extra) or [])
        for dep in edges:
            if not isinstance(dep, dict) or not _marker_holds(dep.get("marker"), env):
                continue
            target = _uv_target(by_name, dep)
            if target is not None:
                todo.append((target, frozenset(dep.get("extra") or ())))
    return Locked("uv.lock", list(pins.values()), skipped)


def _uv_is_code(pkg: dict[str, Any]) -> bool:
    source = pkg.get("source") or {}
    return isinstance(source, dict) and ("editable" in source or "virtual" in source)


def _uv_target(by_name: dict[str, list[dict[str, Any]]],
               dep: dict[str, Any]) -> dict[str, Any] | None:
    candidates = by_name.get(normalize(str(dep.get("name", "")))) or []
    if "version" in dep:
        candidates = [c for c in candidates if str(c.get("version")) == str(dep["version"])]
    return candidates[0] if candidates else None


# -- poetry and pdm: packages by group ----------------------------------------------------

def _poetry(doc: dict[str, Any], env: dict[str, str], path: Path,
            pyproject: dict[str, Any]) -> Locked:
    packages = [p for p in doc.get("package") or [] if isinstance(p, dict)]
    if packages and all("groups" not in p and "category" not in p for p in packages):
        raise UsageError(f"{path}: this lock does not say which packages are the project's "
                         "main dependencies (poetry older than 1.5); run `poetry lock` with a "
                         "newer poetry, or pass --deps requirements.txt")
    return _by_group(packages, {"main"}, "poetry.lock", env, _poetry_marker)


def _poetry_marker(p: dict[str, Any]) -> Any:
    markers = p.get("markers")  # a string, or one per group (lock 2.1)
    return markers.get("main") if isinstance(markers, dict) else markers


def _pdm(doc: dict[str, Any], env: dict[str, str], path: Path,
         pyproject: dict[str, Any]) -> Locked:
    packages = [p for p in doc.get("package") or [] if isinstance(p, dict)]
    return _by_group(packages, {"default"}, "pdm.lock", env, lambda p: p.get("marker"))


def _by_group(packages: list[dict[str, Any]], wanted: set[str], source: str,
              env: dict[str, str], marker: Any) -> Locked:
    pins, skipped = [], []
    for p in packages:
        groups = set(p.get("groups") or ([p["category"]] if "category" in p else []))
        if not groups & wanted or p.get("optional") is True:
            continue
        if not _marker_holds(marker(p), env):
            skipped.append(f"{p.get('name')}=={p.get('version')} (not for this platform: "
                           f"{marker(p)})")
            continue
        pins.append(Pin(str(p.get("name")), str(p.get("version")), _hashes(p.get("files"))))
    return Locked(source, pins, skipped)
