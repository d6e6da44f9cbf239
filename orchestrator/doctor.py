"""`repro doctor`: is this machine ready to launch and record runs?"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import gpu
from .engine import EXECUTORS, Engine
from .engine.images import recipe_kind, repository
from .errors import ReproError
from .hashing import shown
from .recovery import recover
from .scheduler import SCHEDULERS, where
from .store import default_home, open_store


def check(engine: Engine, images_dir: Path, home: Path | None = None) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"name": name, "ok": ok, "detail": detail, "fix": fix})

    try:  # REPRO_EXECUTOR: where a launch goes
        placed = where()
        add("executor", True, f"launches run on this machine's {engine.name} engine"
            if placed.here else f"launches go to {placed.scheduler}; images resolve with "
            f"this machine's {engine.name} engine")
    except ReproError as e:
        add("executor", False, str(e), "set REPRO_EXECUTOR to local, "
            + ", ".join([*EXECUTORS, *SCHEDULERS]))
    docker_ok = False
    try:
        v = engine.version()
        docker_ok = True
        add(engine.name, True, f"engine {v['version']} (API {v['api']}, {v['os']}/{v['arch']})"
            if v.get("api") else f"{engine.name} {v['version']} ({v['os']}/{v['arch']}; no "
            "daemon: images come from the store's archive)")
    except ReproError as e:
        add(engine.name, False, str(e), "scripts/ensure-docker")
    add("runtimes", True, runtimes(engine.name))
    if engine.name == "charliecloud":
        from .engine.limits import here

        add("limits", True, here())
    deboot = shutil.which("debootstrap")
    add("debootstrap", bool(deboot), deboot or "not installed (needed to build base images)",
        "apt-get install debootstrap")
    if images_dir.is_dir():
        for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
            try:
                kind = recipe_kind(folder)
            except ReproError:
                continue
            if not docker_ok:
                add(f"image {folder.name}", False, f"{kind} recipe; cannot check without Docker")
                continue
            built = engine.image(f"{repository(folder.resolve())}:latest")
            add(f"image {folder.name}", built is not None,
                f"{kind} recipe, built as {shown(built['id'])}..." if built else
                f"{kind} recipe, not built yet", f"repro image build {folder}")
    gpus, why = gpu.inventory()
    add("gpus", True, ", ".join(f"{g.name} ({g.memory_gb} GB, driver {g.driver}, CUDA "
                                f"{g.cuda})" for g in gpus) or f"none ({why})")
    home = home or default_home()
    try:
        store = open_store(home)
        add("store", True, f"{home} (schema {store.runs.schema_version}, "
                           f"{store.runs.count()} runs)")
        if docker_ok:
            lost = recover(store, engine)
            add("orphaned runs", True, f"recovered {len(lost)} whose repro process died: "
                f"{', '.join(r.id for r in lost)}" if lost else "none")
        store.close()
    except ReproError as e:
        add("store", False, str(e), "set REPRO_HOME to a writable folder")
    return checks


def runtimes(chosen: str) -> str:
    """Which container runtimes this machine has, and which one a launch uses."""
    found = []
    for name, tool in (("docker", "dockerd"), ("podman", "podman"), ("charliecloud", "ch-run"),
                       ("apptainer", "apptainer")):
        path = shutil.which(tool)
        if path:
            found.append(name)
    listed = ", ".join(found) or "none"
    return (f"{listed} installed; launches use {chosen} (REPRO_ENGINE picks: "
            f"{', '.join(EXECUTORS)})")
