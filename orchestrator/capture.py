"""Environment facts: the host (OS, kernel, CPU, Docker, GPUs) and the container (from the
``env.json`` that ``runtime/repro_boot.py`` writes inside it)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

from . import __version__
from .gpu import GPU

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


def container_facts(meta_dir: Path, warnings: list[str]) -> dict[str, Any]:
    """What the boot script saw inside the container; empty when it did not run.

    The job can rewrite ``/repro/meta`` (it runs as the same user as the boot script), so
    the file is hostile input: read capped and without following links, and it must have
    the shape the boot script writes, else the facts are left out with a warning."""
    from pydantic import ValidationError

    from .record import ContainerFacts
    from .untrusted import Untrusted, read_file, read_json

    facts = ContainerFacts()
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
    facts.seeded, facts.determinism_warnings = _seeding(meta_dir, warnings)
    return facts.model_dump(mode="json", include={"os", "os_release", "python", "packages",
                                                  "lock_problems", "lock_skipped", "seeded",
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
