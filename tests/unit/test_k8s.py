"""The Kubernetes rendering, checked against the Kubernetes API's own models (the
`kubernetes` client): every key the Job and NetworkPolicy carry is one the API defines,
with the type it defines, and the pod runs unprivileged."""

from __future__ import annotations

import pytest

from orchestrator import k8s
from orchestrator.errors import UsageError
from orchestrator.store import open_store
from tests.unit.test_store import record


def _round_trip(doc: dict, kind: str) -> dict:
    """``doc`` through the API's model for ``kind`` and back: an unknown key is dropped, a
    wrong type raises, so what comes back equals what went in only when it is valid."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    model = api._ApiClient__deserialize(doc, kind)  # the client's own deserializer
    return api.sanitize_for_serialization(model)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "h")
    yield s
    s.close()


def test_a_job_renders_valid_unprivileged_and_deny_all(store):
    r = record("k")
    r.resolved.resources.gpus = {"count": 2, "model": "NVIDIA H100"}
    r.resolved.timeout_s = 600
    r.resolved.secrets = ["HF_TOKEN"]
    r.resolved.secret_env = []
    store.runs.add_push(r.resolved.image.digest, "registry.example/team/runs",
                        "sha256:" + "d" * 64)
    job, policy = k8s.manifests(r, store, namespace="ml")
    assert _round_trip(job, "V1Job") == job
    assert _round_trip(policy, "V1NetworkPolicy") == policy
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["image"] == "registry.example/team/runs@sha256:" + "d" * 64
    for c in (main, pod["initContainers"][0]):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert pod["hostname"] == "repro"  # never the pod name: jobs write it into names
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100"}
    assert job["spec"]["activeDeadlineSeconds"] == 900
    assert "HF_TOKEN" not in {e["name"] for e in main["env"]}  # a file, not an env var
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]  # deny all
    assert pod["initContainers"][0]["command"][:3] == ["repro", "fetch", r.id]


@pytest.mark.parametrize("layout", ["project", "outputs"])
def test_the_job_works_where_its_layout_says(store, layout):
    """A run of the project layout works in a writable copy of its code (the fetch writes
    it into that volume); one recorded before works in an empty /repro/outputs."""
    r = record("k")
    r.resolved.layout = layout
    store.runs.add_push(r.resolved.image.digest, "registry.example/team/runs",
                        "sha256:" + "d" * 64)
    job, _ = k8s.manifests(r, store)
    assert _round_trip(job, "V1Job") == job
    pod = job["spec"]["template"]["spec"]
    main, fetch = pod["containers"][0], pod["initContainers"][0]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    if layout == "project":
        assert main["workingDir"] == "/repro/code"
        assert mounts["/repro/code"] == mounts["/repro/outputs"] == "work"
        assert {"name": "work", "mountPath": "/repro/code"} in fetch["volumeMounts"]
    else:
        assert main["workingDir"] == "/repro/outputs" and "/repro/code" not in mounts
        assert mounts["/repro/outputs"] == "outputs"


def test_network_bridge_has_no_policy_and_an_unpushed_image_is_refused(store):
    r = record("n")
    r.resolved.network = "bridge"
    with pytest.raises(UsageError, match="in no registry"):
        k8s.manifests(r, store)
    store.runs.add_push(r.resolved.image.digest, "registry.example/x", "sha256:" + "e" * 64)
    docs = k8s.manifests(r, store)
    assert [d["kind"] for d in docs] == ["Job"]
    assert _round_trip(docs[0], "V1Job") == docs[0]
