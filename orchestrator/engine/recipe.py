"""What an image recipe folder says, and what identifies it.

Three parts a folder may have (``images.build`` builds them in this order):

- ``rootfs.yaml``: a Debian root filesystem made with ``debootstrap`` (alone; no base).
- ``lock:`` in ``recipe.yaml``: a hash-pinned requirements file repro installs into the base
  with ``pip install --require-hashes`` in a throwaway container, the host's CA bundle and
  proxy settings mounted for that step only (they never land in a layer or a bundle).
- ``Dockerfile``: built with the engine, ``FROM ${BASE}`` the base (after the lock step).

``recipe.yaml``::

    base: python              # a folder (../base) or a recipe shipped with repro
    lock: ../requirements.lock
    context: ..               # the build context, default this folder
    build_args: {VARIANT: cpu}

A recipe's digest covers every file its build sees (``.dockerignore`` honoured, ``.git`` and
a store's ``.repro`` never sent), the lock, the build args, the lock installer and its base's
image id. Errors in a recipe are the user's to fix (RecipeError, exit 2) and name the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import RecipeError
from ..recipes import names as shipped_names
from ..recipes import shipped

KEYS = ("base", "lock", "context", "build_args")
NEVER_SENT = (".git", ".repro")  # never part of a build context: history, a store
USES_BASE = re.compile(r"\$\{?BASE\b")


@dataclass(frozen=True)
class Recipe:
    folder: Path
    rootfs: bool = False
    base: Path | None = None
    lock: Path | None = None
    dockerfile: Path | None = None
    context: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.rootfs:
            return "rootfs"
        return "+".join(k for k, v in (("lock", self.lock), ("dockerfile", self.dockerfile))
                        if v is not None)

    @property
    def shipped(self) -> bool:
        return shipped(self.folder.name) == self.folder


def find(name: str, relative_to: Path) -> Path | None:
    """The recipe folder ``name`` names from ``relative_to``: a folder there, else a recipe
    shipped with repro (a bare name such as ``python``), else None."""
    candidate = (relative_to / name)
    if candidate.is_dir():
        return candidate.resolve()
    return shipped(name) if "/" not in name else None


def load(folder: Path) -> Recipe:
    """The recipe in ``folder``, every reference checked (a RecipeError names the file)."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise RecipeError(f"{folder}: no such image recipe folder")
    if (folder / "rootfs.yaml").is_file():
        return Recipe(folder=folder, rootfs=True)
    dockerfile = folder / "Dockerfile"
    has_dockerfile = dockerfile.is_file()
    conf_path = folder / "recipe.yaml"
    if not conf_path.is_file():
        if not has_dockerfile:
            raise RecipeError(f"{folder}: not an image recipe (needs rootfs.yaml, a Dockerfile "
                              "or recipe.yaml with lock:)")
        if USES_BASE.search(dockerfile.read_text(errors="replace")):
            raise RecipeError(f"{dockerfile}: FROM ${{BASE}} needs a base: add {conf_path} "
                              "with `base: python` (the Python image shipped with repro) or "
                              "`base: ../OTHER` (a recipe folder)")
        return Recipe(folder=folder, dockerfile=dockerfile, context=folder)
    conf = read_yaml(conf_path)
    unknown = sorted(set(conf) - set(KEYS))
    if unknown:
        raise RecipeError(f"{conf_path}: unknown key {unknown[0]!r}; a recipe.yaml has "
                          f"{', '.join(KEYS)}")
    base = None
    if conf.get("base") is not None:
        base = find(_text(conf, "base", conf_path), folder)
        if base is None:
            raise RecipeError(f"{conf_path}: base {conf['base']!r} is neither a folder next "
                              f"to it nor a recipe shipped with repro "
                              f"({', '.join(shipped_names())})")
        if base == folder:
            raise RecipeError(f"{conf_path}: base names the recipe itself")
    lock = None
    if conf.get("lock") is not None:
        lock = (folder / _text(conf, "lock", conf_path)).resolve()
        if not lock.is_file():
            raise RecipeError(f"{conf_path}: lock {conf['lock']!r} is not a file ({lock})")
    context = folder
    if conf.get("context") is not None:
        context = (folder / _text(conf, "context", conf_path)).resolve()
        if not context.is_dir():
            raise RecipeError(f"{conf_path}: context {conf['context']!r} is not a folder "
                              f"({context})")
    args = conf.get("build_args") or {}
    if not isinstance(args, dict) or not all(
            isinstance(v, str | int | float | bool) for v in args.values()):
        raise RecipeError(f"{conf_path}: build_args is a mapping of NAME: value")
    if "BASE" in args:
        raise RecipeError(f"{conf_path}: build_args cannot set BASE; repro sets it to the "
                          "base's image id")
    if not has_dockerfile and context != folder and (context / "Dockerfile").is_file():
        dockerfile, has_dockerfile = context / "Dockerfile", True  # the context's own
    if not has_dockerfile and lock is None:
        raise RecipeError(f"{conf_path}: a recipe needs a Dockerfile (next to it or in its "
                          "context) or a lock: to install")
    if base is None and (lock is not None or USES_BASE.search(
            dockerfile.read_text(errors="replace"))):
        needs = "lock: installs into" if lock else "FROM ${BASE} needs"
        raise RecipeError(f"{conf_path}: {needs} a base image; add `base: python` (shipped "
                          "with repro) or `base: ../OTHER`")
    return Recipe(folder=folder, base=base, lock=lock,
                  dockerfile=dockerfile if has_dockerfile else None, context=context,
                  build_args={str(k): str(v) for k, v in args.items()})


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read recipe: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping")
    return data


def _text(conf: dict, key: str, path: Path) -> str:
    value = conf[key]
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{path}: {key} is a path (text)")
    return value


def context_files(context: Path) -> list[str]:
    """The files a build of ``context`` sees, sorted: all but what ``.dockerignore`` names
    (glob patterns on paths relative to the folder; ``!pattern`` takes a path back; the last
    matching line wins, as in Docker) and ``.git``/``.repro``. Folders are listed too."""
    rules: list[tuple[bool, str]] = [(False, name) for name in NEVER_SENT]
    ignore = context / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keep = line.startswith("!")
                rules.append((keep, line.lstrip("!").strip("/")))

    def ignored(rel: str) -> bool:
        verdict = False
        parts = rel.split("/")
        for keep, pattern in rules:
            if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern)
                   for i in range(1, len(parts) + 1)):
                verdict = not keep
        return verdict or any(part in NEVER_SENT for part in parts)

    return [rel for rel in (p.relative_to(context).as_posix()
                            for p in sorted(context.rglob("*")))
            if rel in ("Dockerfile", ".dockerignore") or not ignored(rel)]


def folder_digest(folder: Path, extra: str = "") -> str:
    """Every file a build of ``folder`` sees (``.dockerignore`` honoured: an ignored 1 GiB
    file does not make a new image), with its name and executable bit."""
    h = hashlib.sha256(extra.encode())
    seen = set(context_files(folder))
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root, name)
            rel = p.relative_to(folder).as_posix()
            if rel not in seen:
                continue
            h.update(f"\0{rel}\0{os.access(p, os.X_OK):d}\0".encode())
            h.update(p.read_bytes())
    return "sha256:" + h.hexdigest()


def digest(recipe: Recipe, base_id: str, installer: Path) -> str:
    """What identifies a build of ``recipe`` on ``base_id``. A recipe of only a folder (the
    common case) keeps the digest it always had: folder files and base."""
    own = folder_digest(recipe.folder, extra=base_id)
    extras: list[list[str]] = []
    if recipe.context is not None and recipe.context != recipe.folder:
        extras.append(["context", folder_digest(recipe.context)])
    if recipe.lock is not None:
        extras.append(["lock", hashlib.sha256(recipe.lock.read_bytes()).hexdigest()])
        extras.append(["installer", hashlib.sha256(installer.read_bytes()).hexdigest()])
    if recipe.build_args:
        extras.append(["build_args", json.dumps(recipe.build_args, sort_keys=True)])
    if not extras:
        return own
    return "sha256:" + hashlib.sha256(json.dumps([own, extras]).encode()).hexdigest()


def repository(folder: Path) -> str:
    """The name a recipe's image is tagged with: ``repro/PROJECT/NAME``, PROJECT the folder of
    the git work tree holding the recipe, so two projects' ``train`` recipes never retag
    each other (tags are names only: identity is the recipe digest and the image id).
    Recipes shipped with repro are ``repro/NAME``; the one ``repro init`` writes
    (``PROJECT/repro/image``) is named after its project folder."""
    if shipped(folder.name) == folder:
        return f"repro/{tag_part(folder.name)}"
    root = next((p for p in (folder, *folder.parents) if (p / ".git").exists()), None)
    if folder.name == "image" and folder.parent.name == "repro":  # written by repro init:
        project = folder.parent.parent                            # named after its project
        if root is None or project == root:
            return f"repro/{tag_part(project.name)}"
        return f"repro/{tag_part(root.name)}/{tag_part(project.name)}"
    name = tag_part(folder.name)
    return f"repro/{tag_part(root.name)}/{name}" if root else f"repro/{name}"


def tag_part(text: str) -> str:
    part = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip(".-_")
    return part or "project"


def instruction_lines(dockerfile: str) -> list[int]:
    """The line (1-based) each instruction of a Dockerfile starts on, in order: the build's
    step N is ``instruction_lines(text)[N - 1]``. Comments, blank lines and ``\\``
    continuations are skipped as Docker's parser does."""
    starts: list[int] = []
    continued = False
    for n, raw in enumerate(dockerfile.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment inside a continuation does not end it
        if not continued:
            starts.append(n)
        continued = line.endswith("\\")
    return starts
