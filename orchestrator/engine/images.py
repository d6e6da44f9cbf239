"""Image recipes under ``images/`` that build without any public container registry.

Two kinds of recipe folder:

- ``rootfs.yaml``: a Debian root filesystem made with ``debootstrap`` and imported into the
  engine (``suite``, ``variant``, ``include``, optional ``mirror``).
- ``Dockerfile`` (+ optional ``recipe.yaml`` with ``base: ../OTHER``): built with the engine;
  the base recipe is built first and passed as the build argument ``BASE`` (``FROM ${BASE}``).

A recipe's digest covers every file its build sees (``.dockerignore`` honoured) and its
base's image id. Building again is a no-op: the image tagged with that digest (and carrying
it in its ``org.repro.recipe`` label) is reused, or the one this machine built before (kept
in ``local.db``, loaded back from the store's archive if the engine lost it). Tags are
``repro/PROJECT/NAME:<digest12>`` and ``:latest``, and ``repro/recipe:<digest12>`` (by
content alone: an identical recipe in another project is not built twice).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .. import settings
from ..errors import ImageError
from ..hashing import short, shown
from . import LABEL_RECIPE, Engine, ImageBackend

if TYPE_CHECKING:
    from ..store import Store

DEFAULT_MIRROR = "http://deb.debian.org/debian"
RECIPES = "repro/recipe"  # every build is also tagged repro/recipe:<digest12>, by content alone
ROOTFS_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG=C.UTF-8"]


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    recipe: str
    recipe_digest: str
    reused: bool


def _read_recipe(folder: Path, name: str) -> dict:
    path = folder / name
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ImageError(f"{path}: cannot read recipe: {e}") from None
    if not isinstance(data, dict):
        raise ImageError(f"{path}: a recipe is a YAML mapping")
    return data


def recipe_kind(folder: Path) -> str:
    if (folder / "rootfs.yaml").is_file():
        return "rootfs"
    if (folder / "Dockerfile").is_file():
        return "dockerfile"
    raise ImageError(f"{folder}: not an image recipe (needs rootfs.yaml or a Dockerfile)")


def context_files(context: Path) -> list[str]:
    """The files a build of ``context`` sees, sorted: all but what ``.dockerignore`` names
    (glob patterns on paths relative to the folder; ``!pattern`` takes a path back; the last
    matching line wins, as in Docker). Folders are listed too, for the tar."""
    rules: list[tuple[bool, str]] = []
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
        return verdict

    return [rel for rel in (p.relative_to(context).as_posix()
                            for p in sorted(context.rglob("*")))
            if rel in ("Dockerfile", ".dockerignore") or not ignored(rel)]


def folder_digest(folder: Path, extra: str = "") -> str:
    """What identifies a recipe: every file its build sees (``.dockerignore`` honoured: an
    ignored 1 GiB file does not make a new image) and its base's image id."""
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


def repository(folder: Path) -> str:
    """The name a recipe's image is tagged with: ``repro/PROJECT/NAME``, PROJECT the folder of
    the git work tree holding the recipe, so two projects' ``train`` recipes never retag
    each other (tags are names only: identity is the recipe digest and the image id)."""
    name = _tag_part(folder.name)
    root = next((p for p in (folder, *folder.parents) if (p / ".git").exists()), None)
    return f"repro/{_tag_part(root.name)}/{name}" if root else f"repro/{name}"


def _tag_part(text: str) -> str:
    part = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip(".-_")
    return part or "project"


def build(folder: Path, engine: ImageBackend, on_line: Callable[[str], None],
          force: bool = False, store: Store | None = None) -> BuiltImage:
    """Build the recipe (and its base) unless an image of the same recipe digest exists: by
    its tag, by this machine's record of what it built (``local.db``), or in the store's
    archive (loaded, not rebuilt: a rebuild is not byte-identical). An image that merely
    *claims* the recipe in its label (say, loaded from someone's bundle) is never reused."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such image recipe folder")
    kind = recipe_kind(folder)
    base: BuiltImage | None = None
    if kind == "dockerfile" and (folder / "recipe.yaml").is_file():
        base_rel = _read_recipe(folder, "recipe.yaml").get("base")
        if base_rel:
            base = build((folder / base_rel).resolve(), engine, on_line, force=False,
                         store=store)
    digest = folder_digest(folder, extra=base.id if base else "")
    repo = repository(folder)
    tag = f"{repo}:{short(digest)}"
    if not force:
        if (image_id := _tagged(digest, (tag,), engine)) is not None:
            return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                              reused=True)  # the usual case: one inspect
        image_id = _tagged(digest, (f"{RECIPES}:{short(digest)}",
                                    f"repro/{_tag_part(folder.name)}:{short(digest)}"), engine)
        image_id = image_id or _built_before(digest, engine, store, on_line)
        if image_id is not None:
            _tag_all(engine, image_id, repo, digest)
            return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                              reused=True)
    on_line(f"building {folder.name} ({kind}) -> {tag}")
    if kind == "rootfs":
        image_id = _build_rootfs(folder, repo, digest, engine, on_line)
    else:
        args = {"BASE": base.id} if base else {}
        image_id = engine.build(folder, tag, args, {LABEL_RECIPE: digest}, on_line)
    _tag_all(engine, image_id, repo, digest)
    if store is not None:
        store.local.remember_build(digest, image_id)
    return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                      reused=False)


def _tag_all(engine: ImageBackend, image_id: str, repo: str, digest: str) -> None:
    engine.tag(image_id, repo, short(digest))
    engine.tag(image_id, repo, "latest")
    engine.tag(image_id, RECIPES, short(digest))


def _tagged(digest: str, tags: tuple[str, ...], engine: ImageBackend) -> str | None:
    """The image one of ``tags`` names, if its label says it is ``digest``'s build. Only
    repro's builds carry these tags (an archive is loaded without any), so a same-recipe
    build in another project, or under the pre-namespacing tag, is found too."""
    for ref in tags:
        found = engine.image(ref)
        if found and found["labels"].get(LABEL_RECIPE) == digest:
            return str(found["id"])
    return None


def _built_before(digest: str, engine: ImageBackend, store: Store | None,
                  on_line: Callable[[str], None]) -> str | None:
    """The image this machine built from ``digest`` before, back in the engine if it left
    (loaded from the store's archive), or None."""
    if store is None:
        return None
    image_id = store.local.built(digest)
    if image_id is None:
        return None
    if engine.image(image_id) is not None:
        return image_id
    from ..record import ImageRef
    from .image_archive import archive_of, ensure_present

    ref = ImageRef(digest=image_id)
    if archive_of(ref, store) is None:
        return None
    on_line(f"recipe {short(digest)} was built here before as {shown(image_id)}: loading "
            "it from the store instead of rebuilding")
    ensure_present(ref, store, engine, on_line, registries=False)
    return image_id


def _build_rootfs(folder: Path, repo: str, digest: str, engine: ImageBackend,
                  on_line: Callable[[str], None]) -> str:
    recipe = _read_recipe(folder, "rootfs.yaml")
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed; run scripts/ensure-docker (it installs "
                         "it) or `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise ImageError(f"{folder}: debootstrap needs root; run `repro image build` as root")
    suite = str(recipe.get("suite", "bookworm"))
    mirror = settings.debian_mirror() or recipe.get("mirror") or DEFAULT_MIRROR
    include = ",".join(recipe.get("include", []))
    with tempfile.TemporaryDirectory(prefix="repro-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp, "rootfs")
        cmd = ["debootstrap", f"--variant={recipe.get('variant', 'minbase')}"]
        cmd += [f"--include={include}"] if include else []
        cmd += [suite, str(rootfs), mirror]
        on_line("$ " + " ".join(cmd))
        _stream(cmd, on_line)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "tmp"):
            target = rootfs / junk
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        tar_path = Path(tmp, "rootfs.tar")
        _stream(["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-cf",
                 str(tar_path), "."], on_line)
        on_line(f"importing {tar_path.stat().st_size >> 20} MiB root filesystem")
        changes = [f"ENV {e}" for e in ROOTFS_ENV]
        changes += [f"LABEL {LABEL_RECIPE}={digest}", 'CMD ["python3"]']
        for key, value in (recipe.get("env") or {}).items():
            changes.append(f"ENV {key}={value}")
        return engine.import_rootfs(tar_path, repo, short(digest), changes)


def _stream(cmd: list[str], on_line: Callable[[str], None]) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line.rstrip())
        tail = (tail + [line.rstrip()])[-5:]
    if proc.wait() != 0:
        raise ImageError(f"{cmd[0]} failed (exit {proc.returncode}): {' | '.join(tail)}")


def freeze(image: str, engine: Engine) -> list[str]:
    """``NAME==VERSION`` of every Python distribution in ``image``: the lock of what it has
    (Debian's torch is 1.13.0a0+gitunknown, which no PyPI pin matches). Runs the boot
    script's own package scan in a throwaway container."""
    from ..runtime import RUNTIME_DIR
    from . import JobSpec, Volume

    info = engine.image(image)
    if info is None:
        raise ImageError(f"image {image} is not in the engine; build it with `repro image "
                         "build` or pull it first")
    job = JobSpec(run_id="freeze", image=str(info["id"]),
                  command=["python3", "/repro/lib/repro_boot.py", "--freeze"],
                  volumes=[Volume("lib", RUNTIME_DIR, "/repro/lib")], memory_bytes=512 << 20,
                  timeout_s=120)
    out: list[bytes] = []
    outcome = engine.run(job, lambda _: None, out.append)
    engine.cleanup(outcome.job_id)
    if outcome.code != 0:
        why = outcome.lost or outcome.stderr_tail.strip().splitlines()[-1:] or [
            f"exit {outcome.code}"]
        raise ImageError(f"freeze {image}: the image's python3 could not list its packages "
                         f"({why if isinstance(why, str) else why[0]})")
    return [ln for ln in b"".join(out).decode("utf-8", "replace").splitlines() if "==" in ln]
