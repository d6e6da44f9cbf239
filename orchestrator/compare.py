"""`repro compare`: runs side by side (pure: records in, a comparison document out)."""

from __future__ import annotations

from typing import Any

from .record import RunRecord


def _facts(r: RunRecord) -> dict[str, Any]:
    host = r.environment.get("host", {})
    cont = r.environment.get("container", {})
    gpus = host.get("gpus", [])
    res = r.resolved
    return {
        "status": str(r.status), "spec_digest": r.spec_digest, "image": res.image.digest,
        "code.commit": res.code.commit, "code.snapshot": res.code.snapshot,
        "code.dirty": res.code.dirty, "seed": res.seed, "threads": res.resources.threads,
        "cpus": res.resources.cpus, "memory": res.resources.memory,
        "determinism": res.determinism, "network": res.network,
        "inputs": ", ".join(f"{n}={i.sha256[:12]}" for n, i in sorted(res.inputs.items())),
        "host.os": host.get("os"), "host.kernel": host.get("kernel"),
        "host.cpu": (host.get("cpu") or {}).get("model"), "host.docker": host.get("docker"),
        "gpu.models": ", ".join(g.get("name", "") for g in gpus) or None,
        "gpu.driver": ", ".join(sorted({g.get("driver", "") for g in gpus})) or None,
        "gpu.cuda": ", ".join(sorted({g.get("cuda", "") for g in gpus})) or None,
        "container.os": cont.get("os"), "container.python": cont.get("python"),
        "duration_s": r.duration_s,
    }


def _rows(values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = sorted({k for v in values for k in v})
    return {k: [v.get(k) for v in values] for k in keys}


def _differs(row: list[Any]) -> bool:
    return any(x != row[0] for x in row[1:])


def _packages(r: RunRecord) -> dict[str, str]:
    return {p["name"]: p["version"]
            for p in r.environment.get("container", {}).get("packages", [])}


def compare(records: list[RunRecord]) -> dict[str, Any]:
    """Params, metrics, outputs, facts and packages of each run; what differs is listed."""
    params = _rows([r.params for r in records])
    metrics = _rows([r.metrics for r in records])
    outputs = _rows([{p: f.sha256 for p, f in r.outputs.items()} for r in records])
    facts = _rows([_facts(r) for r in records])
    base = _packages(records[0])
    packages = []
    for r in records[1:]:
        pk = _packages(r)
        packages.append({
            "run": r.id,
            "added": {k: pk[k] for k in sorted(set(pk) - set(base))},
            "removed": {k: base[k] for k in sorted(set(base) - set(pk))},
            "changed": {k: [base[k], pk[k]] for k in sorted(set(base) & set(pk))
                        if base[k] != pk[k]},
        })
    return {
        "runs": [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in records],
        "params": params, "metrics": metrics, "outputs": outputs, "facts": facts,
        "packages_vs_first": packages,
        "differs": {
            "params": [k for k, v in params.items() if _differs(v)],
            "metrics": [k for k, v in metrics.items() if _differs(v)],
            "outputs": [k for k, v in outputs.items() if _differs(v)],
            "facts": [k for k, v in facts.items() if _differs(v) and k != "duration_s"],
            "packages": any(p["added"] or p["removed"] or p["changed"] for p in packages),
        },
    }
