"""Kubernetes: a recorded run rendered as a ``batch/v1`` Job (``repro launch --executor k8s
--dry-run``). Rendering only: repro has not been run against a live cluster, and nothing
collects a Job's outputs back into the store yet (docs/clusters.md says so).

The Job runs the run's image by registry digest (a Kubernetes node pulls; it cannot load an
archive), unprivileged: non-root, no capabilities, no privilege escalation, a read-only root
filesystem, the runtime's default seccomp profile, no service-account token. An init
container (repro's own image) fetches what the record names, each artifact hash-checked,
into a shared volume (``repro fetch RUN --into /repro``); the job container sees it
read-only, with writable emptyDirs for its working folder (the code, written there by the
fetch; an input with a ``mount`` copied to its place), its metadata and /tmp (in memory,
charged to the memory limit). ``network: none`` adds a NetworkPolicy that denies all traffic to and
from the pod. GPUs are ``nvidia.com/gpu`` limits, a GPU model a node selector on the label
NVIDIA's GPU feature discovery sets (``nvidia.com/gpu.product``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from . import settings
from .engine import CONTAINER_HOSTNAME
from .errors import UsageError
from .params import param_env
from .record import RunRecord
from .runtime import RUNTIME_DIR
from .store import Store
from .workdir import CODE, PROJECT, target

TITLE = "Kubernetes"
SUBMITS = False  # the Scheduler protocol (scheduler.py): rendering only, for now
USER = 65534  # nobody, as for a local run


def options(flags: dict[str, Any]) -> str | None:
    """The namespace: REPRO_K8S_NAMESPACE (none: the context's own)."""
    return settings.k8s_namespace()


def require_shared_store() -> None:
    """Nothing to check when only rendering (the init container reads the stores the
    rendered Job names)."""


def _render_only(*_: Any, **__: Any) -> Any:
    raise UsageError("--executor k8s renders a Job only (add --dry-run); repro does not "
                     "submit to a live Kubernetes cluster yet")


submit = follow = reconcile = cancel = _render_only


def image_ref(record: RunRecord, store: Store) -> str:
    """The run's image as a registry reference by digest, or a one-line refusal."""
    image = record.resolved.image
    if image.ref and "@sha256:" in image.ref:
        return image.ref
    pushes = store.runs.pushes(image.digest)
    if pushes:
        repo, digest = pushes[0]
        return f"{repo}@{digest}"
    raise UsageError(f"image {image.digest[:19]} of run {record.id} is in no registry: a "
                     "Kubernetes node must pull it by digest; push it (`repro image push "
                     "IMAGE REGISTRY/NAME`, or set REPRO_ARTIFACTS=oci://... and launch)")


def render(record: RunRecord, store: Store, namespace: str | None = None
           ) -> tuple[str, list[dict[str, Any]]]:
    """The Job (and, for ``network: none``, its deny-all NetworkPolicy): as YAML for people,
    and as plain documents."""
    import yaml

    docs = manifests(record, store, namespace)
    return (f"# repro run {record.id} ({record.name}) as a Kubernetes Job; a dry run records "
            "nothing\n" + yaml.safe_dump_all(docs, sort_keys=False)), docs


def manifests(record: RunRecord, store: Store, namespace: str | None = None
              ) -> list[dict[str, Any]]:
    """The Job (and, for ``network: none``, its deny-all NetworkPolicy) as plain documents."""
    r = record.resolved
    res = r.resources
    name = f"repro-{record.id}"
    labels = {"app.kubernetes.io/managed-by": "repro", "org.repro.run": record.id}
    if record.sweep_id:
        labels["org.repro.sweep"] = record.sweep_id
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    limits: dict[str, Any] = {"cpu": f"{res.cpus:g}", "memory": str(res.memory_bytes)}
    node_selector: dict[str, str] = {}
    if res.gpus:
        limits["nvidia.com/gpu"] = str(int(res.gpus.get("count", 1)))
        if res.gpus.get("model"):
            node_selector["nvidia.com/gpu.product"] = str(res.gpus["model"]).replace(" ", "-")
    env = {**r.env, **param_env(r.params), "REPRO_RUN_ID": record.id}
    as_env = r.secrets if r.secret_env is None else r.secret_env
    env_list: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
    env_list += [{"name": s, "valueFrom": {"secretKeyRef": {"name": "repro-secrets", "key": s}}}
                 for s in r.secrets if s in as_env]
    unprivileged = {"runAsNonRoot": True, "runAsUser": USER, "runAsGroup": USER,
                    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]}}
    store_env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": "repro-store", "key": k}}}
                 for k in ("REPRO_STORE", "REPRO_ARTIFACTS")]
    project = r.layout == PROJECT  # the job works in a writable copy of its code
    work_mounts = [{"name": "work", "mountPath": CODE},
                   {"name": "work", "mountPath": "/repro/outputs"}] if project else [
                   {"name": "outputs", "mountPath": "/repro/outputs"}]
    job_container: dict[str, Any] = {
        "name": "job", "image": image_ref(record, store),
        "command": ["/bin/sh", "/repro/lib/boot.sh", *r.command],
        "workingDir": target(r.layout), "env": env_list,
        "resources": {"requests": dict(limits), "limits": dict(limits)},
        "securityContext": unprivileged,
        "volumeMounts": [
            {"name": "repro", "mountPath": "/repro", "readOnly": True},
            *work_mounts,
            {"name": "meta", "mountPath": "/repro/meta"},
            {"name": "tmp", "mountPath": "/tmp"},
            *[{"name": "secrets", "mountPath": "/run/secrets", "readOnly": True}
              for _ in r.secrets[:1]]]}
    fetch: dict[str, Any] = {
        "name": "fetch",
        "image": settings.k8s_fetch_image(),
        "command": ["repro", "fetch", record.id, "--into", "/repro"],
        "env": store_env + [{"name": "REPRO_HOME", "value": "/tmp/repro-home"}],
        "securityContext": unprivileged,
        "resources": {"requests": {"cpu": "1", "memory": str(1 << 30)},
                      "limits": {"cpu": "1", "memory": str(1 << 30)}},
        "volumeMounts": [{"name": "repro", "mountPath": "/repro"},
                         *([{"name": "work", "mountPath": CODE}] if project else []),
                         {"name": "tmp", "mountPath": "/tmp"}]}
    volumes: list[dict[str, Any]] = [
        {"name": "repro", "emptyDir": {}},
        {"name": "work" if project else "outputs", "emptyDir": {}},
        {"name": "meta", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"medium": "Memory",
                                     "sizeLimit": str(res.memory_bytes // 2)}}]
    if r.secrets:
        volumes.append({"name": "secrets", "secret": {
            "secretName": "repro-secrets", "defaultMode": 0o400,
            "items": [{"key": s, "path": s} for s in r.secrets]}})
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "enableServiceLinks": False, "hostname": CONTAINER_HOSTNAME,
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER, "runAsGroup": USER,
                            "fsGroup": USER, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [fetch], "containers": [job_container], "volumes": volumes}
    if node_selector:
        pod["nodeSelector"] = node_selector
    spec: dict[str, Any] = {"backoffLimit": 0, "ttlSecondsAfterFinished": 7 * 86400,
                            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if r.timeout_s:
        spec["activeDeadlineSeconds"] = int(r.timeout_s) + 300  # fetching takes its time
    docs: list[dict[str, Any]] = [{"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                                   "spec": spec}]
    if r.network == "none":
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {**meta, "name": f"{name}-no-network"},
                     "spec": {"podSelector": {"matchLabels": {"org.repro.run": record.id}},
                              "policyTypes": ["Ingress", "Egress"]}})
    return docs


def fetch_into(record: RunRecord, store: Store, dest: Path) -> list[str]:
    """What the job container needs, under ``dest`` (the init container's shared volume):
    the code snapshot, the inputs, the lock, repro's runtime and run.json, each artifact
    hash-checked on its way out. Returns what was written."""
    from .snapshot import extract

    r = record.resolved
    written = []
    code = extract(r.code.snapshot, store)
    shutil.copytree(code, dest / "code", dirs_exist_ok=True, symlinks=True)
    written.append("code")
    (dest / "inputs").mkdir(parents=True, exist_ok=True)
    for name, inp in sorted(r.inputs.items()):
        if inp.kind != "file":
            raise UsageError(f"input {name} is a folder; a job rendered for Kubernetes or "
                             "Apptainer takes files")
        store.artifacts.copy_out(inp.sha256, dest / "inputs" / name)
        written.append(f"inputs/{name}")
        if inp.mount and r.layout == PROJECT:  # where the project's code opens it
            (dest / "code" / inp.mount).parent.mkdir(parents=True, exist_ok=True)
            store.artifacts.copy_out(inp.sha256, dest / "code" / inp.mount)
            written.append(f"code/{inp.mount}")
    if r.packages is not None:
        from .runtime import VENDOR_PACKAGING

        store.artifacts.copy_out(r.packages.sha256, dest / "lock.txt")
        shutil.copytree(VENDOR_PACKAGING, dest / "vendor" / "packaging", dirs_exist_ok=True)
        written += ["lock.txt", "vendor/packaging"]
    shutil.copytree(RUNTIME_DIR, dest / "lib", dirs_exist_ok=True)
    (dest / "run.json").write_text(json.dumps({
        "id": record.id, "name": record.name, "params": r.params, "seed": r.seed,
        "inputs": {n: f"/repro/inputs/{n}" for n in r.inputs}, "outputs": "/repro/outputs",
        "workdir": target(r.layout), "command": r.command}))
    written += ["lib", "run.json"]
    return written
