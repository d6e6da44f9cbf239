"""Environment facts: the host (OS, kernel, CPU, Docker, GPUs) and the container: its image's
OS, Python and packages as ``runtime/repro_boot.py --facts`` says them in a throwaway
container of the image that repro runs itself, or, when that could not run, from the
``env.json`` the boot script writes inside the job's container (which the job may rewrite)."""

from __future__ import annotations

import functools
import os
import platform
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .gpu import GPU

if TYPE_CHECKING:
    from .engine import Executor, JobSpec
    from .record import ContainerFacts

ENV_JSON_LIMIT = 16 << 20  # bytes of the boot script's env.json (packages of a big image)


def cpu_facts() -> dict[str, Any]:
    model, vendor, flags = "", "", list[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = sorted(value.split())
                if model and vendor and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor(), "vendor": vendor,
            "arch": platform.machine(), "count": os.cpu_count(), "flags": flags}


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def memory_bytes() -> int | None:
    """This machine's memory (MemTotal), or None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_gb() -> float | None:
    total = memory_bytes()
    return None if total is None else round(total / 2**30, 1)


def host_facts(engine: dict[str, Any], gpus: list[GPU], assigned: list[GPU]) -> dict[str, Any]:
    """This machine's facts; ``engine`` is what the engine said of itself (its version)."""
    docker = engine
    return {
        "hostname": socket.gethostname()[:256],
        "os": os_name(),
        "kernel": platform.release(),
        "cpu": cpu_facts(),
        "memory_gb": memory_gb(),
        "docker": docker["version"],
        "docker_api": docker["api"],
        "engine": docker.get("engine", "docker"),
        "gpus": [g.as_dict() for g in gpus],
        "gpus_assigned": [g.uuid for g in assigned],
        "repro": __version__,
    }


FACTS_PREFIX = b"REPRO-FACTS "


def facts_key(image_id: str, lock_path: Path | None) -> str:
    """An image's facts are a function of the image, the lock checked against it and the
    boot script that looked: the cache key of all three."""
    from .hashing import sha256_file

    parts = [image_id, _boot_digest(),
             sha256_file(lock_path)[0] if lock_path is not None else "-"]
    return ":".join(parts)


@functools.cache
def _boot_digest() -> str:
    """The boot script's sha256, once per process (it is part of every launch's cache key)."""
    from .hashing import sha256_file
    from .runtime import RUNTIME_DIR

    return sha256_file(RUNTIME_DIR / "repro_boot.py")[0]


def facts_job(image_id: str, lock_path: Path | None, store_home: str, run_id: str) -> JobSpec:
    """A throwaway container of the image that only says what it is (``repro_boot.py
    --facts``): no network, as nobody, nothing of the run's mounted, so nothing a job
    writes can change what is recorded."""
    from .engine import LABEL_FACTS_RUN, LABEL_FACTS_STORE, JobSpec, Volume
    from .runtime import RUNTIME_DIR, VENDOR_PACKAGING

    volumes = [Volume("lib", RUNTIME_DIR, "/repro/lib")]
    if lock_path is not None:
        volumes += [Volume("lock", lock_path, "/repro/lock.txt"),
                    Volume("vendor", VENDOR_PACKAGING, "/repro/vendor/packaging")]
    return JobSpec(run_id="facts", image=image_id, workdir="/",
                   command=["/bin/sh", "/repro/lib/boot.sh", "--facts"], volumes=volumes,
                   memory_bytes=512 << 20, timeout_s=120, tmp_bytes=16 << 20,
                   labels={LABEL_FACTS_STORE: store_home, LABEL_FACTS_RUN: run_id})


def image_facts(executor: Executor, image_id: str, lock_path: Path | None, store_home: str,
                run_id: str) -> dict[str, Any]:
    """Run ``facts_job`` and return the facts it printed, checked (the image is as
    untrusted as the job: its output is capped and must have the boot script's shape).
    Raises ReproError when the image could not say (no python3, say)."""
    from pydantic import ValidationError

    from .errors import ReproError
    from .record import ContainerFacts
    from .untrusted import Untrusted, loads

    out = bytearray()

    def keep(chunk: bytes) -> None:
        if len(out) <= ENV_JSON_LIMIT:
            out.extend(chunk[:ENV_JSON_LIMIT + 1 - len(out)])

    job = facts_job(image_id, lock_path, store_home, run_id)
    outcome = executor.run(job, lambda _: None, keep)
    executor.cleanup(outcome.job_id)
    line = next((ln for ln in bytes(out).splitlines() if ln.startswith(FACTS_PREFIX)), None)
    if outcome.code != 0 or line is None or len(out) > ENV_JSON_LIMIT:
        why = outcome.lost or (outcome.stderr_tail.strip().splitlines() or [
            f"exit {outcome.code}" if len(out) <= ENV_JSON_LIMIT else "too much output"])[-1]
        raise ReproError(f"the image's facts could not be captured ({why[:200]})")
    try:
        doc = loads(line[len(FACTS_PREFIX):], "the image's facts", max_depth=4)
        facts = ContainerFacts.model_validate(doc)
    except (Untrusted, ValidationError) as e:
        raise ReproError(f"the image's facts are malformed ({str(e).splitlines()[0][:200]})"
                         ) from None
    return facts.model_dump(mode="json", include=IMAGE_FACTS)


IMAGE_FACTS = {"os", "os_release", "python", "packages", "lock_problems", "lock_skipped"}


def container_facts(meta_dir: Path, warnings: list[str],
                    image: dict[str, Any] | None = None) -> dict[str, Any]:
    """The container's facts: ``image``'s, when repro captured them from outside
    (``image_facts``), else what the boot script wrote inside it (empty when it did not
    run), labelled as the job's report; what was seeded is always the job's report.

    The job can rewrite ``/repro/meta`` (it runs as the same user as the boot script), so
    the file is hostile input: read capped and without following links, and it must have
    the shape the boot script writes, else the facts are left out with a warning."""
    from pydantic import ValidationError

    from .record import ContainerFacts
    from .untrusted import Untrusted, read_file, read_json

    facts = ContainerFacts()
    if image is not None:
        facts = ContainerFacts.model_validate({**image, "captured": "image"})
        facts.seeded, facts.determinism_warnings = _seeding(meta_dir, warnings)
        return _dumped(facts)
    try:
        data = read_json(meta_dir / "env.json", ENV_JSON_LIMIT)
        if data is None:
            text = (read_file(meta_dir / "os-release", 1 << 16) or b"").decode("utf-8",
                                                                               "replace")
            pairs = (ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
            data = {"os": dict(pairs).get("PRETTY_NAME", "").strip('"')}
        facts = ContainerFacts.model_validate(data)
    except Untrusted as e:
        warnings.append(f"container facts not recorded: {e}")
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        warnings.append(f"container facts not recorded: env.json is malformed at {where} "
                        f"({first['msg']})")
    facts.captured = "job"
    facts.seeded, facts.determinism_warnings = _seeding(meta_dir, warnings)
    return _dumped(facts)


def _dumped(facts: ContainerFacts) -> dict[str, Any]:
    return facts.model_dump(mode="json", include=IMAGE_FACTS | {"captured", "seeded",
                                                                "determinism_warnings"})


def _seeding(meta_dir: Path, warnings: list[str]) -> tuple[list[str], list[str]]:
    """What runtime/sitecustomize.py seeded in the job's processes, and the determinism
    warnings torch gave (a job file: read capped, names checked)."""
    from .untrusted import Untrusted, loads, printable, read_file

    try:
        data = read_file(meta_dir / "seeded.jsonl", 1 << 20) or b""
    except Untrusted as e:
        warnings.append(f"{e}; what was seeded is not recorded")
        return [], []
    seeded: set[str] = set()
    notes: list[str] = []
    for line in data.splitlines():
        try:
            item = loads(line, "seeded.jsonl", max_depth=2)
        except Untrusted:
            continue
        if not isinstance(item, dict):
            continue
        if item.get("seeded") in ("random", "numpy", "torch"):
            seeded.add(item["seeded"])
        elif isinstance(item.get("warning"), str) and len(notes) < 50:
            notes.append(printable(item["warning"][:500]))
    return sorted(seeded), list(dict.fromkeys(notes))
