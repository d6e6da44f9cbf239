"""Environment facts in one vocabulary, read from a record's environment: the replay verdict
("which facts changed, and why that can change bits") and `repro compare` both use these
keys (they once read the same dicts through two sets of names).
"""

from __future__ import annotations

from typing import Any

from .record import HostFacts, RunRecord

HINTS = {
    "image": "a different image means different libraries and binaries",
    "threads": "thread count changes the order of floating-point reductions",
    "cpu.model": "another CPU can select other BLAS/SIMD kernels, changing float rounding",
    "cpu.flags": "instruction-set extensions (AVX2, AVX-512, FMA) decide which kernels run",
    "cpu.arch": "another architecture runs other code paths entirely",
    "gpu.model": "another GPU runs other kernels; floating-point results differ",
    "gpu.driver": "the driver is not in the image; a new one can change CUDA kernels",
    "gpu.cuda": "the driver's CUDA version can change library kernels",
    "kernel": "rarely changes bits; noted for completeness",
    "runtime": "the container runtime (Docker, podman, Charliecloud) and its version rarely "
               "change bits; a job that reads its environment sees Charliecloud's CH_RUNNING",
    "container.os": "a different OS release in the container means different libraries",
    "container.python": "another Python version can change hashing, floats and libraries",
    "container.packages": "different package versions run different code",
    "container.hostname": "jobs write the hostname into names and files (TensorBoard's "
                          "event files); before repro fixed it, each run had a random one",
    "container.machine_id": "jobs that read /etc/machine-id name or seed things by it",
}

HARDWARE = ("cpu.model", "cpu.arch", "cpu.flags", "gpu.model", "gpu.driver", "gpu.cuda")


def of_host(host: HostFacts) -> dict[str, Any]:
    """The facts of a host (``environment.host`` of a record, or this machine's now); the GPUs
    are the ones the run was given, else all the host has. A fact not recorded is None."""
    cpu = host.cpu
    assigned = set(host.gpus_assigned)
    used = [g for g in host.gpus if g.uuid in assigned] or host.gpus
    return {
        "cpu.model": cpu.model or None, "cpu.arch": cpu.arch or None,
        "cpu.flags": set(cpu.flags),
        "gpu.model": sorted(g.name for g in used),
        "gpu.driver": sorted({g.driver for g in used}),
        "gpu.cuda": sorted({g.cuda for g in used}),
        "kernel": host.kernel or None,
        "runtime": f"{host.engine or 'docker'} {host.docker}" if host.docker else None,
    }


def of_record(record: RunRecord) -> dict[str, Any]:
    cont = record.environment.container
    return {
        "image": record.resolved.image.digest,
        "threads": record.resolved.resources.threads,
        **of_host(record.environment.host),
        "container.os": cont.os or None, "container.python": cont.python,
        "container.packages": {p.name: p.version for p in cont.packages},
        # None: an older record, which ran under a random name (Docker's default)
        "container.hostname": cont.hostname or None,
        "container.machine_id": cont.machine_id or None,
    }


def diff(name: str, a: Any, b: Any) -> dict[str, Any] | None:
    """How fact ``name`` changed from ``a`` to ``b`` (None when it did not): sets as
    added/removed, mappings as added/removed/changed, anything else as original/replay."""
    if a == b:
        return None
    change: dict[str, Any] = {"fact": name, "hint": HINTS.get(name, "")}
    if isinstance(a, set):
        change.update(added=sorted(b - a), removed=sorted(a - b))
    elif isinstance(a, dict):
        change.update(added={k: b[k] for k in sorted(set(b) - set(a))},
                      removed={k: a[k] for k in sorted(set(a) - set(b))},
                      changed={k: [a[k], b[k]] for k in sorted(set(a) & set(b))
                               if a[k] != b[k]})
    else:
        change.update(original=a, replay=b)
    return change


def changes(a: dict[str, Any], b: dict[str, Any], keys: Any) -> list[dict[str, Any]]:
    return [c for k in keys if (c := diff(k, a.get(k), b.get(k)))]


def shown(value: Any) -> Any:
    """A fact as a table cell: sets and lists joined, None kept."""
    if isinstance(value, set | list):
        return ", ".join(str(v) for v in sorted(value)) or None
    return value
