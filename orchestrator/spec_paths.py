"""Where a spec's paths point: each one it names is checked where the spec says (relative to
the spec file's folder), and a path written from the repository root gets the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .recipes import names as shipped_names
from .recipes import shipped

Loc = tuple[str | int, ...]


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def path_problems(data: dict[str, Any], spec_path: Path) -> list[tuple[Loc, str]]:
    """The files and folders the spec names, each where the spec says (relative to its own
    folder): code.path, packages.lock, every input, an image recipe folder."""
    out: list[tuple[Loc, str]] = []
    base = spec_path.parent

    def field(*loc: str | int) -> Any:
        node: Any = data
        for part in loc:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, str) else None

    def check(loc: Loc, rel: str | None, problem: str, folder: bool = False) -> None:
        if rel is not None and (why := missing_path(base, rel, problem, folder)):
            out.append((loc, why))

    build = field("image", "build")
    if build is not None and shipped(build) is None:
        check(("image", "build"), build, "is not a recipe folder; point it at a folder of "
              f"images/ or a recipe shipped with repro ({', '.join(shipped_names())})",
              folder=True)
    check(("code", "path"), field("code", "path"),
          "is not a folder; point code.path at the job's code", folder=True)
    check(("packages", "lock"), field("packages", "lock"),
          "does not exist; create it (pip freeze style NAME==VERSION lines)")
    for name in _mapping(data.get("inputs")):
        check(("inputs", str(name), "path"), field("inputs", name, "path"),
              "does not exist; point it at the data, or create it")
    return out


def missing_path(base: Path, rel: str, problem: str, folder: bool = False) -> str | None:
    """Why a spec path (relative to the spec file's folder ``base``) is not there, or None.
    When it exists from the repository root (or the working directory) the message says how
    to write it."""
    path = (base / rel).resolve()
    if path.is_dir() if folder else path.exists():
        return None
    hint = ""
    for root in (repo_root(base), Path.cwd()):
        other = (root / rel).resolve()
        if other.is_dir() if folder else other.exists():
            fixed = os.path.relpath(other, base)
            hint = (f" (paths in a spec are relative to the spec file's folder: did you mean "
                    f"{fixed!r}?)")
            break
    return f"{path} {problem}{hint}"


def repo_root(base: Path) -> Path:
    """The git work tree holding ``base`` (or ``base`` itself outside one)."""
    p = base.resolve()
    for candidate in (p, *p.parents):
        if (candidate / ".git").exists():
            return candidate
    return p
