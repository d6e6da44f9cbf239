"""RunSpec -> ResolvedSpec: every input of a run made a content address, once.

Reads the world (engine, git, input files) but decides nothing about running. The
``spec_digest`` hashes only what determines the result (content addresses, command, params,
seed, env, resources), not host paths, so the same run resolves to the same digest anywhere.
"""

from __future__ import annotations

import os
import secrets as _secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import settings
from .engine import ImageBackend
from .engine.image_save import Beside, archived_already, ensure_archived
from .engine.images import build as build_image
from .engine.recipe import find as find_recipe
from .errors import SpecError
from .hashing import as_digest, digest_of, hex_of, sha256_file, shown
from .params import param_flags, param_overrides, substitute
from .recipes import names as shipped_names
from .record import (
    ImageRef,
    InputRef,
    PackagesRef,
    ResolvedSpec,
    ResourcesRef,
    ResumeRef,
    RunRecord,
)
from .runtime.repro_boot import parse_lock
from .snapshot import Snapshot, take
from .spec import ImageSpec, LoadedSpec, parse_memory
from .spec_paths import missing_path, repo_root
from .store import Store
from .units import human_size
from .workdir import CODE, OUTPUTS, PROJECT

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")


SECRET_MIN = 4  # characters a secret (and each redacted line of one) must have


@dataclass
class Resolution:
    resolved: ResolvedSpec
    spec_digest: str
    snapshot: Snapshot
    input_sources: dict[str, Path]  # name -> host path mounted read-only
    lock_path: Path | None
    secret_env: dict[str, str] = field(repr=False, default_factory=dict)  # name -> value
    warnings: list[str] = field(default_factory=list)
    archive_later: bool = False  # the image's archive is written while the job runs
    strict: bool = False  # launch --strict: an executor refuses a limit it cannot enforce
    # files put in the working folder before the job starts, by their path in it (a segment
    # verify's checkpoint): part of the folder as laid out, not outputs unless changed
    placed: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor(list(self.secret_env.values()))

    def redact_bytes(self, data: bytes) -> bytes:
        return self.redactor.redact_bytes(data)

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)


class Redactor:
    """Secret values replaced by ``***`` in logs, stderr tails, reasons and names: each value
    and each line of a multi-line one (a job printing a key line by line), longest first."""

    def __init__(self, values: list[str]) -> None:
        found = set(values)
        for value in values:
            found.update(line.strip() for line in value.splitlines())
        self.needles = sorted((v.encode() for v in found if len(v) >= SECRET_MIN), key=len,
                              reverse=True)

    def redact_bytes(self, data: bytes) -> bytes:
        for needle in self.needles:
            data = data.replace(needle, b"***")
        return data

    def redact(self, text: str) -> str:
        if not self.needles:
            return text
        return self.redact_bytes(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")

    def holds_secret(self, text: str) -> bool:
        return self.redact(text) != text


def secret_values(names: list[str], where: str) -> dict[str, str]:
    """The values of the named secrets in this shell. Each must be set and long enough to be
    redacted: a 1-character secret would turn every log into asterisks."""
    values = {}
    for name in names:
        if name not in os.environ:
            raise SpecError(f"{where}: secret {name} is not set in this shell; export it "
                               "or remove it from secrets")
        value = os.environ[name]
        if len(value.strip()) < SECRET_MIN:
            raise SpecError(f"{where}: secret {name} is {len(value.strip())} character(s); "
                               f"one shorter than {SECRET_MIN} cannot be kept out of logs "
                               "(redacting it would shred them); pass such a value in env")
        values[name] = value
    return values


def spec_digest(resolved: ResolvedSpec) -> str:
    """Digest of what determines the result; host paths and tags are left out."""
    r = resolved.model_dump(mode="json")
    identity: dict[str, Any] = {
        "image": r["image"]["digest"],
        "code": r["code"]["snapshot"],
        "inputs": {n: i["sha256"] for n, i in r["inputs"].items()},
        "packages": r["packages"]["sha256"] if r["packages"] else None,
    }
    for key in ("command", "params", "seed", "env", "secrets", "network", "timeout_s",
                "determinism", "outputs"):
        identity[key] = r[key]
    # added later: part of the digest only when they say something (old digests stay put)
    mounts = {n: i["mount"] for n, i in r["inputs"].items() if i.get("mount")}
    if mounts:
        identity["input_mounts"] = mounts
    if r.get("outputs_exclude"):
        identity["outputs_exclude"] = r["outputs_exclude"]
    if r.get("layout", OUTPUTS) != OUTPUTS:
        identity["layout"] = r["layout"]
    if r["secrets"] and r.get("secret_env") is not None:  # how the job sees its secrets
        identity["secret_env"] = r["secret_env"]
    identity["resources"] = {k: r["resources"][k] for k in ("cpus", "threads", "memory_bytes",
                                                            "gpus")}
    return digest_of(identity)


def resolve(loaded: LoadedSpec, store: Store, engine: ImageBackend, *, allow_dirty: bool = False,
            strict: bool = False, on_line: Callable[[str], None] = lambda _: None,
            archive_beside: bool = False) -> Resolution:
    """What ``loaded`` runs, everything pinned and its code, inputs and lock in the store.
    ``archive_beside``: an image the store has no archive of yet is archived while the job
    runs (``Resolution.archive_later``; the runner does it) where the store and the engine
    allow it, not here; a scheduler's run needs its image archived before it is submitted."""
    spec = loaded.spec
    base = loaded.base_dir
    warnings: list[str] = []

    seed = spec.seed
    if seed is None:
        seed = _secrets.randbelow(2**31)
        warnings.append(f"{loaded.path}: no seed given; using seed {seed} (recorded, and used "
                        "again by replay)")

    image = resolve_image(spec.image, loaded, engine, strict, warnings, on_line, store)
    archive_later = False
    if settings.archive_images():
        known = archived_already(image.digest, store)
        if known is None and archive_beside and Beside.possible(store, engine):
            archive_later = True  # the runner archives it while the job runs
        else:
            image = image.model_copy(update={"archive": known or ensure_archived(
                image.digest, store, engine, on_line)})
    if spec.code.path:
        code_path = _existing(loaded, ("code", "path"), spec.code.path,
                              "is not a folder; point code.path at the job's code", folder=True)
    else:
        code_path = repo_root(base)
    snapshot = take(code_path, store, allow_dirty, recorded=_recorded_files(loaded, code_path))
    code = snapshot.ref
    trace(on_line, "code", f"{(code.commit or 'no commit')[:12]}  "
          + ("dirty: the diff is recorded" if code.dirty else "clean")
          + f"  {code.files} files  {shown(code.snapshot)}")
    if snapshot.ref.dirty:
        warnings.append(f"code at {snapshot.ref.path} has uncommitted changes; the diff is "
                        f"recorded as {snapshot.ref.diff or 'the snapshot itself'}")

    inputs, sources = {}, {}
    for name, inp in spec.inputs.items():
        inputs[name], sources[name] = _resolve_input(loaded, name, inp.path, inp.sha256, store,
                                                     on_line)
        if inp.mount:
            inputs[name].mount = inp.mount
        if inputs[name].kind == "file" and not inputs[name].stored:
            warnings.append(f"input {name} ({inputs[name].size >> 20} MiB) is larger than "
                            "REPRO_INPUT_STORE_LIMIT: it is read from its path, not kept in "
                            "the store, so a replay needs that file unchanged (or --input "
                            f"{name}=PATH) and a bundle carries it only if asked")

    packages, lock_path = None, None
    if spec.packages:
        lock_path = _existing(loaded, ("packages", "lock"), spec.packages.lock,
                              "does not exist; create it (pip freeze style NAME==VERSION lines)")
        try:
            data = lock_path.read_bytes()
            pins = parse_lock(data.decode())
        except OSError as e:
            raise loaded.error(("packages", "lock"), f"cannot read {lock_path}: {e.strerror}; "
                               "create it (pip freeze style NAME==VERSION lines)") from None
        except ValueError as e:
            raise SpecError(f"{lock_path}: {e}; pin every package as NAME==VERSION") from None
        # kept in the store: replay mounts exactly these bytes, whatever the file says later
        packages = PackagesRef(lock=spec.packages.lock, sha256=store.artifacts.put(data).sha256,
                               pins=pins)
        trace(on_line, "lock", f"{spec.packages.lock}  {len(pins)} pins, checked in the "
              "container before the job")

    resources = spec.resources
    threads = resources.threads
    gpu_req = resources.gpu_requirement
    env = determinism_env(spec.determinism, seed, threads, snapshot.source_date_epoch)
    trace(on_line, "seed", f"{seed}{' (drawn)' if spec.seed is None else ''}  " + (
        "seeds random at start, numpy and torch when imported" if spec.determinism == "strict"
        else "nothing seeded (determinism off)"))
    trace(on_line, "threads", f"{threads} per math library  cpus {resources.cpus:g}  memory "
          f"{resources.memory}  network {spec.network}")
    for key, value in spec.env.items():  # no REPRO_* here: load_spec refused them
        env[key] = substitute(str(value), dict(spec.params), seed)
    # the helper first, then what the spec adds, then the code root (in-repo packages import
    # from any script of the project)
    env["PYTHONPATH"] = ":".join(p for p in ("/repro/lib", env.get("PYTHONPATH"), CODE) if p)

    secret_env = secret_values(spec.secret_names, loaded.where(("secrets",)))
    check_params_hold_no_secret(dict(spec.params), secret_env, loaded)

    command = [substitute(a, dict(spec.params), seed) for a in spec.command]
    if spec.args == "flags":
        command += param_flags(dict(spec.params))
    elif spec.args == "overrides":
        command += param_overrides(dict(spec.params))
    resolved = ResolvedSpec(
        image=image, code=snapshot.ref, inputs=inputs, packages=packages, command=command,
        params=dict(spec.params), seed=seed, env=env, secrets=spec.secret_names,
        secret_env=spec.secret_env_names,
        resources=ResourcesRef(cpus=resources.cpus, threads=threads, memory=resources.memory,
                               memory_bytes=parse_memory(resources.memory),
                               gpus=gpu_req.model_dump() if gpu_req else None),
        network=spec.network, timeout_s=spec.timeout, determinism=spec.determinism,
        outputs=list(spec.outputs.include), outputs_exclude=list(spec.outputs.exclude),
        layout=PROJECT, compare=list(spec.compare),
        log_normalize=list(spec.log_normalize), metrics_from_log=dict(spec.metrics_from_log),
        resume=ResumeRef(**spec.resume.model_dump()) if spec.resume else None,
    )
    return Resolution(resolved=resolved, spec_digest=spec_digest(resolved), snapshot=snapshot,
                      input_sources=sources, lock_path=lock_path, secret_env=secret_env,
                      warnings=warnings, archive_later=archive_later, strict=strict)


def check_params_hold_no_secret(params: dict[str, Any], secret_env: dict[str, str],
                                loaded: LoadedSpec) -> None:
    """Params are recorded and shown everywhere: one holding a secret's value is refused."""
    redactor = Redactor(list(secret_env.values()))
    for name, value in params.items():
        if isinstance(value, str) and redactor.holds_secret(value):
            raise loaded.error(("params", name), "holds the value of a secret; params are "
                               "recorded and shown, so pass it as a secret, not a param")


ANNOTATION_LIMIT = 4000  # characters of a tag value or note


def check_annotation(record: RunRecord, texts: Iterable[str]) -> None:
    """A tag value or note is recorded and shown: refuse one too long, or one holding the
    value of a secret the run uses (as set in this shell)."""
    names = record.resolved.secrets
    redactor = Redactor([os.environ[n] for n in names if n in os.environ])
    for text in texts:
        if len(text) > ANNOTATION_LIMIT:
            raise SpecError(f"a tag or note longer than {ANNOTATION_LIMIT} characters; keep "
                            "long text in a file and note where it is")
        if redactor.holds_secret(text):
            raise SpecError(f"that text holds the value of secret(s) run {record.id} uses "
                            f"({', '.join(names)}); annotations are recorded and shown")


def determinism_env(mode: str, seed: int, threads: int, epoch: int) -> dict[str, str]:
    """The environment every run gets. Thread counts are pinned in every mode: they change
    floating-point results on CPU (DESIGN.md, measured)."""
    env = {v: str(threads) for v in THREAD_VARS}
    # no .pyc written into the working folder (its outputs), in every mode. Not
    # PYTHONPYCACHEPREFIX: with it Python reads no .pyc either, the image's own included, and
    # every job compiled what it imported from source (numpy: 410 ms against 73 ms)
    env.update({"REPRO_SEED": str(seed), "REPRO_DETERMINISM": mode, "HOME": "/tmp",
                "PYTHONDONTWRITEBYTECODE": "1"})
    if mode == "strict":
        env.update({"PYTHONHASHSEED": str(seed), "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
                    "TZ": "UTC", "LC_ALL": "C.UTF-8", "SOURCE_DATE_EPOCH": str(epoch)})
    return env


def _existing(loaded: LoadedSpec, field: tuple[str, ...], rel: str, problem: str,
              folder: bool = False) -> Path:
    """A spec path, relative to the spec file's folder (``load_spec`` checked it; it may
    have gone since)."""
    why = missing_path(loaded.base_dir, rel, problem, folder)
    if why:
        raise loaded.error(field, why)
    return (loaded.base_dir / rel).resolve()


def trace(on_line: Callable[[str], None], what: str, text: str) -> None:
    """One line of launch's live trace: what was pinned, as it is pinned."""
    on_line(f"{what:<8} {text}")


def _recorded_files(loaded: LoadedSpec, code_path: Path) -> list[Path]:
    """The spec, its lock, its image recipe and its inputs: recorded by content with every
    run, so not part of the code snapshot (an input inside the code folder, data usually
    git-ignored or not yet committed, never makes the code dirty)."""
    spec, base = loaded.spec, loaded.base_dir
    paths = [loaded.path]
    for inp in spec.inputs.values():
        path = (base / inp.path).resolve()
        if path != code_path and code_path in path.parents:
            paths.append(path)
    if spec.packages is not None:
        paths.append(base / spec.packages.lock)
    if spec.image.build is not None:
        folder = find_recipe(spec.image.build, base)
        if folder is not None:
            paths.append(folder)
    return [p for p in paths if p.exists()]


def resolve_image(image: ImageSpec, loaded: LoadedSpec, engine: ImageBackend, strict: bool,
                  warnings: list[str], on_line: Callable[[str], None],
                  store: Store | None = None) -> ImageRef:
    if image.build is not None:
        folder = find_recipe(image.build, loaded.base_dir) or _existing(
            loaded, ("image", "build"), image.build, "is not a recipe folder; point it at a "
            f"folder of images/ or a recipe shipped with repro ({', '.join(shipped_names())})",
            folder=True)
        built = build_image(folder, engine, on_line, store=store)
        how = ("loaded from the store's archive" if built.loaded else
               "reused" if built.reused else "built")
        trace(on_line, "image", f"{shown(built.id)}  {built.tag}  {how}")
        return ImageRef(ref=built.tag, digest=built.id, recipe=image.build,
                        recipe_digest=built.recipe_digest)
    ref = image.ref or ""
    if not image.pinned and strict:
        raise loaded.error(("image", "ref"), f"{ref!r} is a tag, not pinned; use "
                           "NAME@sha256:... or drop --strict to record the digest it "
                           "resolves to")
    info = engine.image(ref)
    if info is None:
        on_line(f"pulling {ref}")
        engine.pull(ref)
        info = engine.image(ref)
    if info is None:
        raise loaded.error(("image", "ref"), f"{ref} is not in the engine and could not be "
                           "pulled")
    trace(on_line, "image", f"{shown(info['id'])}  {ref}  "
          + ("pinned" if image.pinned else "tag resolved to its digest"))
    if image.pinned:
        return ImageRef(ref=ref, digest=info["id"], repo_digest=ref.split("@", 1)[1])
    repo_digest = next((d.split("@", 1)[1] for d in info["repo_digests"]), None)
    warnings.append(f"image {ref} is a tag; recorded its digest {shown(info['id'])}... (pin it "
                    "as NAME@sha256:... to make the spec itself reproducible)")
    return ImageRef(ref=ref, digest=info["id"], repo_digest=repo_digest)


def _resolve_input(loaded: LoadedSpec, name: str, rel: str, pin: str | None,
                   store: Store, on_line: Callable[[str], None] = lambda _: None
                   ) -> tuple[InputRef, Path]:
    path = _existing(loaded, ("inputs", name, "path"), rel, "does not exist")
    if path.is_dir():
        sha, size = dir_digest(path, store)
        ref, source = InputRef(path=str(path), kind="dir", sha256=sha, size=size), path
        how = "folder"
    else:
        st = path.stat()
        known = store.local.cached_hash(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        sha, size, stored = _file_digest(path, store)
        ref = InputRef(path=str(path), sha256=sha, size=size, stored=stored)
        source = store.artifacts.local_path(sha) if stored else path
        how = "hash cached" if known else "hashed"
    if pin and pin != ref.sha256:
        raise loaded.error(("inputs", name, "sha256"), f"{path} has sha256 {ref.sha256}, not "
                           f"the pinned {pin}; restore the data or update the pin")
    trace(on_line, "input", f"{name}  {shown(as_digest(ref.sha256))}  {human_size(ref.size)}  "
          + how + ("  pin matches" if pin else ""))
    return ref, source


def _file_digest(path: Path, store: Store) -> tuple[str, int, bool]:
    """sha256 via the stat cache; files under the limit are copied into the artifact store
    in the same pass (so the container reads exactly the bytes that were hashed)."""
    st = path.stat()
    cached = store.local.cached_hash(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    keep = st.st_size <= settings.input_store_limit()
    if cached and (not keep or store.artifacts.has(cached)):
        return cached, st.st_size, keep
    if keep:
        put = store.artifacts.put(path, name=str(path))
        sha, size = put.sha256, put.size
    else:
        sha, size = sha256_file(path)
    store.local.cache_hash(str(path), st.st_size, st.st_mtime_ns, st.st_ino, sha)
    return sha, size, keep


def dir_digest(path: Path, store: Store | None) -> tuple[str, int]:
    """sha256 of the canonical manifest {relative path: file sha256} of a folder (links and
    what is not a regular file left out), and its size; file hashes through the store's
    stat cache when there is a store."""
    manifest: dict[str, str] = {}
    total = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for n in sorted(files):
            p = Path(root, n)
            if p.is_symlink() or not p.is_file():
                continue
            st = p.stat()
            key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
            sha = store.local.cached_hash(*key) if store is not None else None
            if sha is None:
                sha, _ = sha256_file(p)
                if store is not None:
                    store.local.cache_hash(*key, sha)
            manifest[p.relative_to(path).as_posix()] = sha
            total += st.st_size
    return hex_of(digest_of(manifest)), total
