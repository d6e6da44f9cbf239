"""Image recipes under ``images/`` that build without any public container registry.

Two kinds of recipe folder:

- ``rootfs.yaml``: a Debian root filesystem made with ``debootstrap`` and imported into the
  engine (``suite``, ``variant``, ``include``, optional ``mirror``).
- ``Dockerfile`` (+ optional ``recipe.yaml`` with ``base: ../OTHER``): built with the engine;
  the base recipe is built first and passed as the build argument ``BASE`` (``FROM ${BASE}``).

A recipe's digest covers every file in its folder and its base's image id; an image carrying
that digest in its ``org.repro.recipe`` label is reused, so building again is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import settings
from ..errors import ImageError
from ..hashing import short
from . import LABEL_RECIPE, Engine, ImageBackend

DEFAULT_MIRROR = "http://deb.debian.org/debian"
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


def folder_digest(folder: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root, name)
            rel = p.relative_to(folder).as_posix()
            h.update(f"\0{rel}\0{os.access(p, os.X_OK):d}\0".encode())
            h.update(p.read_bytes())
    return "sha256:" + h.hexdigest()


def build(folder: Path, engine: ImageBackend, on_line: Callable[[str], None],
          force: bool = False) -> BuiltImage:
    """Build the recipe (and its base) unless an image of the same recipe digest exists."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such image recipe folder")
    kind = recipe_kind(folder)
    base: BuiltImage | None = None
    if kind == "dockerfile" and (folder / "recipe.yaml").is_file():
        base_rel = _read_recipe(folder, "recipe.yaml").get("base")
        if base_rel:
            base = build((folder / base_rel).resolve(), engine, on_line, force=False)
    digest = folder_digest(folder, extra=base.id if base else "")
    repo = f"repro/{folder.name.lower()}"
    tag = f"{repo}:{short(digest)}"
    if not force:
        found = engine.image(tag)  # one inspect; the label proves it is this recipe's build
        if found and found["labels"].get(LABEL_RECIPE) == digest:
            return BuiltImage(id=found["id"], tag=tag, recipe=str(folder),
                              recipe_digest=digest, reused=True)
    on_line(f"building {folder.name} ({kind}) -> {tag}")
    if kind == "rootfs":
        image_id = _build_rootfs(folder, repo, digest, engine, on_line)
    else:
        args = {"BASE": base.id} if base else {}
        image_id = engine.build(folder, tag, args, {LABEL_RECIPE: digest}, on_line)
    engine.tag(image_id, repo, short(digest))
    engine.tag(image_id, repo, "latest")
    return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                      reused=False)


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
