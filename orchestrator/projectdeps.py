"""Where a project declares its dependencies and what it declares, read and never run: its
own lock (uv, poetry, pdm: ``lockfiles.py``), ``requirements.txt``, ``pyproject.toml``
(PEP 621, or poetry's table as PEP 440 specifiers) or ``setup.py``'s literal
``install_requires``; and the hash-pinned lock of what pip resolved from them in the image.
``repro init`` uses it."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from . import projectscan
from .errors import UsageError
from .lockfiles import LOCKS


def dependency_source(root: Path, notes: list[str], deps: str | None = None) -> str:
    """Where the project declares its dependencies (``deps`` when given: a requirements
    file, a uv/poetry/pdm lock, pyproject.toml or setup.py): its own lock first (uv,
    poetry, pdm), then requirements.txt, then pyproject.toml, then setup.py; "" for none.
    A file of those names that is a link out of the project, a FIFO or a device is never
    read (and noted)."""
    if deps is not None:
        path = root / deps
        if not path.is_file() or not projectscan.inside(root, path):
            raise UsageError(f"--deps {deps}: not a file in {root}; name a requirements file, "
                             f"{', '.join(LOCKS)}, pyproject.toml or setup.py")
        return path.resolve().relative_to(root.resolve()).as_posix()
    for name in (*LOCKS, "requirements.txt", "pyproject.toml", "setup.py"):
        path = root / name
        if not os.path.lexists(path):
            continue
        if not path.is_file() or not projectscan.inside(root, path):
            notes.append(f"{name} is not a regular file in the project: not read")
            continue
        if name == "pyproject.toml" and not pyproject_dependencies(root):
            continue
        if name == "setup.py" and not setup_py_dependencies(root):
            continue
        return name
    return ""


def setup_py_dependencies(root: Path) -> list[str]:
    """The literal ``install_requires`` of ``setup(...)`` in setup.py (read, never run)."""
    tree = projectscan.parse(root, "setup.py")
    for node in ast.walk(tree) if tree is not None else []:
        if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "setup" or
                                           getattr(node.func, "attr", None) == "setup"):
            for kw in node.keywords:
                if kw.arg == "install_requires":
                    try:
                        value = ast.literal_eval(kw.value)
                    except (ValueError, TypeError, SyntaxError):
                        return []
                    if isinstance(value, list | tuple):
                        return [str(v) for v in value]
    return []


def pyproject_dependencies(root: Path) -> list[str]:
    """``[project] dependencies``, else poetry's ``[tool.poetry.dependencies]`` as
    requirement lines (python itself left out)."""
    import tomllib

    text = projectscan.read_text(root, "pyproject.toml")
    if text is None:
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{root / 'pyproject.toml'}: cannot read it ({e})") from None
    deps = (data.get("project") or {}).get("dependencies")
    if deps:
        return [str(d) for d in deps]
    poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    out = []
    for name, spec in poetry.items():
        if name.lower() == "python" or isinstance(spec, dict) and spec.get("optional"):
            continue
        version = spec.get("version", "*") if isinstance(spec, dict) else str(spec)
        out.append(name + _poetry_specifier(str(version)))
    return out


def _poetry_specifier(version: str) -> str:
    """poetry's ``^1.2`` / ``~1.2`` / ``1.2.*`` / ``*`` as a PEP 440 specifier."""
    v = version.strip()
    if v in ("", "*"):
        return ""
    if v.startswith("^"):
        parts = v[1:].split(".")
        first = next((i for i, x in enumerate(parts) if x != "0"), len(parts) - 1)
        upper = [*parts[:first], str(int(parts[first]) + 1)]
        return f">={v[1:]},<{'.'.join(upper)}"
    if v.startswith("~") and not v.startswith("~="):
        parts = v[1:].split(".")
        upper = [parts[0], str(int(parts[1]) + 1)] if len(parts) > 1 else [str(int(parts[0]) + 1)]
        return f">={v[1:]},<{'.'.join(upper)}"
    return v if v[0] in "<>=!~" else f"=={v}"


def hash_pinned(text: str) -> bool:
    """Is every requirement line of ``text`` pinned with == and carrying a --hash?"""
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.split(" #", 1)[0].strip() for ln in logical.splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith(("#", "-"))]
    return bool(reqs) and all("==" in r and "--hash=" in r for r in reqs)


INDEX_OPTIONS = re.compile(r"^\s*(--index-url|--extra-index-url|-i|--find-links|-f)[\s=]\S+",
                           re.M)


def lock_text(items: list[dict], source: str, requirements: str = "") -> str:
    """The lock of what pip resolved (``items``), with the index options of the
    ``requirements`` it came from (the PyTorch CPU index, say), which the install needs too."""
    missing = [f"{i.get('name')} ({i.get('url')})" for i in items if not i.get("sha256")]
    if missing:
        raise UsageError(f"{source}: {missing[0]} has no sha256 on its index; pin it to a "
                         "release from an index (PyPI) so it can be hash-locked")
    lines = [f"{i['name']}=={i['version']} \\\n    --hash=sha256:{i['sha256']}"
             for i in sorted(items, key=lambda i: str(i["name"]).lower())]
    options = [m.group(0).strip() for m in INDEX_OPTIONS.finditer(requirements)]
    # the header names no source: projects that need the same packages share one image
    return ("# Resolved for the image's Python and platform, every dependency pinned with its"
            "\n# hash; installed with pip --require-hashes. Regenerate: repro init --force\n"
            + "".join(f"{o}\n" for o in options) + "\n".join(lines) + "\n")
