"""Building image recipes (``recipe.py`` says what a recipe folder holds) without any
public container registry, and the lock of what an image has.

Building again is a no-op: the image tagged with the recipe digest (and carrying it in its
``org.repro.recipe`` label) is reused, or the one built before by anyone sharing the store
(its ``recipe_images`` table; loaded back from the store's archive if the engine lost it). Tags are
``repro/PROJECT/NAME:<digest12>`` and ``:latest``, and ``repro/recipe:<digest12>`` (by
content alone: an identical recipe in another project is not built twice).

Reproducible as Docker 20.10 allows: root filesystems are tarred in name order with every
mtime clamped to ``SOURCE_DATE_EPOCH``; the lock step installs with no pip cache, writes
``.pyc`` files by hash and sets every file it changed to that time. An image's *id* still
differs per build (its config records when it was made), so repro never rebuilds what it
has: it reuses or reloads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import settings
from ..errors import ImageError, RecipeError, ReproError
from ..hashing import short, shown
from ..runtime import RUNTIME_DIR
from . import (
    LABEL_RECIPE,
    BuildFailed,
    Engine,
    ImageBackend,
    Interrupted,
    JobSpec,
    Outcome,
    Volume,
)
from . import recipe as recipes
from .recipe import Recipe, repository, tag_part

if TYPE_CHECKING:
    from ..store import Store

DEFAULT_MIRROR = "http://deb.debian.org/debian"
RECIPES = "repro/recipe"  # every build is also tagged repro/recipe:<digest12>, by content alone
ROOTFS_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG=C.UTF-8"]
BUILD_DIR = "/mnt"  # where a lock step sees its installer, lock, settings and CA bundle
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
              "no_proxy")  # Docker's predefined build args: never in an image's history
TAIL = 8
INSTALLER = RUNTIME_DIR / "repro_install.py"  # part of a lock recipe's digest


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    recipe: str
    recipe_digest: str
    reused: bool
    loaded: bool = False  # reused, but loaded back from the store's archive first


def recipe_kind(folder: Path) -> str:
    return recipes.load(folder).kind


def build(folder: Path, engine: ImageBackend, on_line: Callable[[str], None],
          force: bool = False, store: Store | None = None) -> BuiltImage:
    """Build the recipe (and its base) unless an image of the same recipe digest exists: by
    its tag, by the store's record of what was built from it (``recipe_images``), loaded
    from the store's archive when the engine lost it (not rebuilt: a rebuild is not
    byte-identical). An image that merely
    *claims* the recipe in its label (say, loaded from someone's bundle) is never reused."""
    recipe = recipes.load(folder)
    folder = recipe.folder
    base = None
    if recipe.base is not None:
        base = build(recipe.base, engine, on_line, force=False, store=store)
    digest = recipes.digest(recipe, base.id if base else "", INSTALLER)
    repo = repository(folder)
    tag = f"{repo}:{short(digest)}"
    if not force:
        if (image_id := _tagged(digest, (tag,), engine)) is not None:
            _known(store, digest, image_id)
            return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                              reused=True)  # the usual case: one inspect
        image_id = _tagged(digest, (f"{RECIPES}:{short(digest)}",
                                    f"repro/{tag_part(folder.name)}:{short(digest)}"), engine)
        loaded = False
        if image_id is None:
            image_id, loaded = _built_before(digest, engine, store, on_line)
        if image_id is not None:
            _tag_all(engine, image_id, repo, digest)
            return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                              reused=True, loaded=loaded)
    on_line(f"building {folder.name} ({recipe.kind}) -> {tag}")
    if recipe.rootfs:
        image_id = _build_rootfs(folder, repo, digest, engine, on_line)
    else:
        assert base is not None or recipe.lock is None
        image_id = base.id if base else ""
        if recipe.lock is not None:
            image_id = _install_lock(recipe, image_id, digest, engine, on_line)
        if recipe.dockerfile is not None:
            image_id = _build_dockerfile(recipe, image_id, tag, digest, engine, on_line)
    _tag_all(engine, image_id, repo, digest)
    if store is not None:
        store.runs.add_recipe_image(digest, image_id)
    return BuiltImage(id=image_id, tag=tag, recipe=str(folder), recipe_digest=digest,
                      reused=False)


def _known(store: Store | None, digest: str, image_id: str) -> None:
    """The store learns what this engine built ``digest`` into (once): a machine with no
    engine to build in (Charliecloud) finds it there and loads it from the archive."""
    if store is not None and store.runs.recipe_image(digest) != image_id:
        store.runs.add_recipe_image(digest, image_id)


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
                  on_line: Callable[[str], None]) -> tuple[str | None, bool]:
    """The image ``digest`` was built into before by a member of this store (this machine
    or a teammate sharing it), back in the engine if it left (loaded from the store's
    archive), or None; and whether it had to be loaded."""
    if store is None:
        return None, False
    image_id = store.runs.recipe_image(digest)
    if image_id is None:
        return None, False
    if engine.image(image_id) is not None:
        return image_id, False
    from ..record import ImageRef
    from .image_archive import archive_of, ensure_present

    ref = ImageRef(digest=image_id)
    if archive_of(ref, store) is None:
        return None, False
    on_line(f"recipe {short(digest)} was built here before as {shown(image_id)}: loading "
            "it from the store instead of rebuilding")
    ensure_present(ref, store, engine, on_line, registries=False)
    return image_id, True


def _build_dockerfile(recipe: Recipe, base_id: str, tag: str, digest: str,
                      engine: ImageBackend, on_line: Callable[[str], None]) -> str:
    """``docker build``; a failed step is reported at its Dockerfile line."""
    assert recipe.dockerfile is not None and recipe.context is not None
    args = {**recipe.build_args, **({"BASE": base_id} if base_id else {})}
    args.update({k: v for k in PROXY_VARS if (v := os.environ.get(k))})
    if "SOURCE_DATE_EPOCH" in recipe.dockerfile.read_text(errors="replace"):
        args.setdefault("SOURCE_DATE_EPOCH", str(settings.source_date_epoch()))
    try:
        return engine.build(recipe.context, tag, args, {LABEL_RECIPE: digest}, on_line,
                            dockerfile=recipe.dockerfile)
    except BuildFailed as e:
        raise RecipeError(_build_failure(recipe.dockerfile, e)) from None


def _build_failure(dockerfile: Path, e: BuildFailed) -> str:
    where = str(dockerfile)
    what = ""
    parse = re.search(r"parse error (?:on )?line (\d+)", e.error)
    if parse:
        return f"{where}:{parse[1]}: {e.error}"
    if e.step is not None:
        starts = recipes.instruction_lines(dockerfile.read_text(errors="replace"))
        n, instruction = e.step
        if 0 < n <= len(starts):
            where += f":{starts[n - 1]}"
        what = f" `{instruction[:120]}`"
    lines = " | ".join(line.strip() for line in e.tail if line.strip())
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in lines + e.error:
        hint = ("; HTTPS certificates could not be verified in the build: a Dockerfile step "
                "does not get this machine's CA bundle (classic builds have no secrets), so "
                "install packages through recipe.yaml's lock:, which does")
    return f"{where}: step{what} failed: {e.error}" + (f" (last lines: {lines})" if lines
                                                       else "") + hint


def _install_lock(recipe: Recipe, base_id: str, digest: str, engine: ImageBackend,
                  on_line: Callable[[str], None]) -> str:
    """pip install --require-hashes of the recipe's lock into ``base_id``, in a throwaway
    container as root with a network; what it changed is committed as the new image. The CA
    bundle and proxy settings are mounted for this step only."""
    assert recipe.lock is not None
    if not hasattr(engine, "run"):
        raise ImageError(f"{recipe.folder}: this engine cannot run a lock step")
    runner = cast(Engine, engine)
    info = engine.image(base_id) or {}
    config = info.get("config") or {}
    on_line(f"installing {recipe.lock.name} (pip --require-hashes) into {shown(base_id)}")
    with tempfile.TemporaryDirectory(prefix="repro-build-") as tmp:
        shutil.copyfile(recipe.lock, Path(tmp, "lock.txt"))
        volumes = _build_mounts(Path(tmp), {"lock": f"{BUILD_DIR}/lock.txt"})
        outcome, tail = _run_step(runner, base_id, digest, "install", volumes, on_line)
        try:
            if outcome.code != 0:
                raise _step_failed(recipe.lock, outcome, tail, "pip could not install it")
            changes = [f"LABEL {LABEL_RECIPE}={digest}",
                       f"WORKDIR {config.get('workdir') or '/'}",
                       f"USER {config.get('user') or 'root'}"]
            if config.get("cmd"):
                changes.append(f"CMD {json.dumps(config['cmd'])}")
            return runner.commit(outcome.job_id, changes)
        finally:
            runner.cleanup(outcome.job_id)


def lock_requirements(requirements: Path, image_id: str, engine: Engine,
                      on_line: Callable[[str], None]) -> list[dict]:
    """Resolve a requirements file for ``image_id``'s Python and platform with its pip (no
    install): [{name, version, sha256, url}] of every distribution, dependencies included."""
    with tempfile.TemporaryDirectory(prefix="repro-lock-") as tmp:
        shutil.copyfile(requirements, Path(tmp, "requirements.txt"))
        volumes = _build_mounts(Path(tmp), {"requirements": f"{BUILD_DIR}/requirements.txt"})
        outcome, tail = _run_step(engine, image_id, "lock", "lock", volumes, on_line,
                                  keep=lambda line: line.startswith("REPRO-LOCK "))
        engine.cleanup(outcome.job_id)
        if outcome.code != 0:
            raise _step_failed(requirements, outcome, tail, "pip could not resolve it")
        found = [line for line in tail if line.startswith("REPRO-LOCK ")]
        if not found:
            raise ImageError(f"{requirements}: the resolver printed no lock")
        return list(json.loads(found[-1][len("REPRO-LOCK "):]))


def _build_mounts(tmp: Path, config: dict[str, str]) -> list[Volume]:
    """One read-only folder at /mnt (there in every Debian image, so the step leaves no
    mount point behind in what it commits): the installer, the step's settings, the CA
    bundle, and the files the step reads (already copied into ``tmp``)."""
    env = {k: v for k in PROXY_VARS if (v := os.environ.get(k))}
    shutil.copyfile(INSTALLER, tmp / INSTALLER.name)
    ca = settings.ca_bundle()
    if ca is not None:
        shutil.copyfile(ca, tmp / "ca.crt")
        env.update({k: f"{BUILD_DIR}/ca.crt" for k in ("PIP_CERT", "SSL_CERT_FILE",
                                                      "REQUESTS_CA_BUNDLE")})
    (tmp / "build.json").write_text(json.dumps(
        {**config, "env": env, "epoch": settings.source_date_epoch()}))
    return [Volume("build", tmp, BUILD_DIR)]


def _run_step(engine: Engine, image_id: str, name: str, action: str, volumes: list[Volume],
              on_line: Callable[[str], None], keep: Callable[[str], bool] = lambda _: False
              ) -> tuple[Outcome, list[str]]:
    """Run the installer's ``action`` in a throwaway root container of ``image_id`` with a
    network; returns how it ended and its last lines (plus every line ``keep`` wants)."""
    job = JobSpec(run_id=f"build-{short(name) if name.startswith('sha256:') else name}",
                  image=image_id,
                  command=["python3", "-B",  # -B: no .pyc of its own imports in the layer
                           f"{BUILD_DIR}/{INSTALLER.name}", action, f"{BUILD_DIR}/build.json"],
                  volumes=volumes, user="0:0", workdir="/", cpus=float(os.cpu_count() or 1),
                  memory_bytes=settings.build_memory(), network="bridge",
                  timeout_s=settings.build_timeout(), stop_grace_s=2)
    tail: list[str] = []
    kept: list[str] = []
    pending = [b""]

    def on_log(chunk: bytes) -> None:
        data = pending[0] + chunk
        *whole, pending[0] = data.split(b"\n")
        for raw in whole:
            line = raw.decode("utf-8", "replace").rstrip()
            if keep(line):
                kept.append(line)
                continue
            on_line(line)
            tail[:] = (tail + [line])[-TAIL:]

    outcome = engine.run(job, lambda _: None, on_log)
    if pending[0]:
        on_log(b"\n")
    if outcome.interrupted:
        engine.cleanup(outcome.job_id)
        raise Interrupted()
    return outcome, tail + kept


def _step_failed(path: Path, outcome: Outcome, tail: list[str], what: str) -> ReproError:
    if outcome.lost:
        return ImageError(f"{path}: the engine went away during the build ({outcome.lost})")
    if outcome.timed_out:
        return ImageError(f"{path}: the build ran past {settings.build_timeout():.0f} s "
                          "(REPRO_BUILD_TIMEOUT)")
    if outcome.oom_killed:
        return ImageError(f"{path}: the build ran out of memory (REPRO_BUILD_MEMORY)")
    text = " ".join(tail)
    if outcome.code == 2:
        return RecipeError(f"{path}: the base image's python3 has no pip; build on `base: "
                           "python` (a venv with pip, shipped with repro)")
    hint = next((h for needle, h in LOCK_HINTS if needle in text), "")
    said = [line.strip() for line in tail if line.strip()
            and not line.startswith(("REPRO-LOCK ", "WARNING: Retrying"))]
    lines = " | ".join(line if len(line) <= 200 else line[:199] + "…" for line in said[-5:])
    return RecipeError(f"{path}: {what} (exit {outcome.code}){hint}: {lines}")


LOCK_HINTS = [
    ("CERTIFICATE_VERIFY_FAILED", "; HTTPS certificates could not be verified: set "
     "REPRO_CA_BUNDLE to the CA bundle this machine trusts (mounted for the build only)"),
    ("externally-managed-environment", "; the base's python3 is the distribution's (PEP 668): "
     "build on `base: python`"),
    ("DO NOT MATCH THE HASHES", "; what the index served differs from the lock's hashes: "
     "regenerate the lock (repro init --force)"),
    ("Hashes are required", "; every line needs --hash=sha256:... (repro init writes such a "
     "lock)"),
    ("must have their versions pinned", "; every line needs ==VERSION and its hashes, "
     "dependencies included (repro init writes such a lock)"),
    ("No matching distribution", "; check the name and version, and that this machine can "
     "reach the index (proxy settings: HTTPS_PROXY)"),
]


def _build_rootfs(folder: Path, repo: str, digest: str, engine: ImageBackend,
                  on_line: Callable[[str], None]) -> str:
    recipe = recipes.read_yaml(folder / "rootfs.yaml")
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
        _pyc_by_hash(rootfs, on_line)
        # ldconfig's cache of inode numbers and times: the one file that differed between
        # two debootstraps of the same recipe (make rebuild-check); ldconfig rebuilds it
        (rootfs / "var/cache/ldconfig/aux-cache").unlink(missing_ok=True)
        tar_path = Path(tmp, "rootfs.tar")
        epoch = settings.source_date_epoch()
        _stream(["tar", "--numeric-owner", "--sort=name", f"--mtime=@{epoch}",
                 "--clamp-mtime", "-C", str(rootfs), "-cf", str(tar_path), "."], on_line)
        on_line(f"importing {tar_path.stat().st_size >> 20} MiB root filesystem")
        changes = [f"ENV {e}" for e in ROOTFS_ENV]
        changes += [f"LABEL {LABEL_RECIPE}={digest}", 'CMD ["python3"]']
        for key, value in (recipe.get("env") or {}).items():
            changes.append(f"ENV {key}={value}")
        return engine.import_rootfs(tar_path, repo, short(digest), changes)


def _pyc_by_hash(rootfs: Path, on_line: Callable[[str], None]) -> None:
    """Rewrite the root filesystem's ``.pyc`` files as hash-checked (PEP 552). Debian writes
    them stamped with each source's mtime, which the tar below clamps to SOURCE_DATE_EPOCH:
    every one went stale, and every job compiled each module it imported from source on
    every run (the standard library's json: 50 ms; numpy: 410 ms instead of 73 ms). Run with
    the image's own Python, in a chroot; files with syntax errors (Debian ships a few test
    files) are left without one, as Debian leaves them."""
    pythons = sorted(str(p.relative_to(rootfs)) for p in (rootfs / "usr/lib").glob("python3*")
                     if p.is_dir())
    if not pythons or not (rootfs / "usr/bin/python3").exists():
        return
    on_line(f"compiling .pyc files by hash in /{', /'.join(pythons)}")
    done = subprocess.run(["chroot", str(rootfs), "/usr/bin/python3", "-m", "compileall", "-q",
                           "-f", "--invalidation-mode", "checked-hash",
                           *(f"/{p}" for p in pythons)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                               "PYTHONHASHSEED": "0"}, check=False)
    if done.returncode != 0:  # the image works, its jobs compile what is missing at start
        on_line("warning: some .pyc files could not be written by hash (compileall exit "
                f"{done.returncode}); jobs compile those modules each time they start")


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


PROBE = """\
import json, os, pkgutil, platform, sys
i = sys.implementation
env = {"implementation_name": i.name, "os_name": os.name, "sys_platform": sys.platform,
       "implementation_version": "%d.%d.%d" % i.version[:3],
       "platform_machine": platform.machine(), "platform_release": platform.release(),
       "platform_system": platform.system(), "platform_version": platform.version(),
       "python_full_version": platform.python_version(),
       "platform_python_implementation": platform.python_implementation(),
       "python_version": ".".join(platform.python_version_tuple()[:2])}
mods = sorted({m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names))
print("REPRO-PROBE " + json.dumps({"env": env, "modules": mods}))
"""


def probe(image_id: str, engine: Engine) -> dict[str, Any]:
    """What ``image_id``'s Python is: ``env``, its environment markers (PEP 508: what a
    lock's ``; sys_platform == ...`` is evaluated against) and ``modules``, every top-level
    module it can import. A throwaway container without network, as nobody."""
    from . import JobSpec

    job = JobSpec(run_id="probe", image=image_id, command=["python3", "-c", PROBE],
                  memory_bytes=512 << 20, timeout_s=120)
    out: list[bytes] = []
    outcome = engine.run(job, lambda _: None, out.append)
    engine.cleanup(outcome.job_id)
    lines = b"".join(out).decode("utf-8", "replace").splitlines()
    found = [ln for ln in lines if ln.startswith("REPRO-PROBE ")]
    if outcome.code != 0 or not found:
        why = outcome.lost or (outcome.stderr_tail.strip().splitlines() or [
            f"exit {outcome.code}"])[-1]
        raise ImageError(f"image {shown(image_id)}: its python3 could not say what it is "
                         f"({why})")
    doc = json.loads(found[-1][len("REPRO-PROBE "):])
    return {"env": {str(k): str(v) for k, v in doc["env"].items()},
            "modules": [str(m) for m in doc["modules"]]}
