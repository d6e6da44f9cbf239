"""One fake of the engine seam for unit tests (docker-py's fake_api_client, in spirit): it
satisfies ``Executor`` and ``ImageBackend``, plays a scripted job against the job's real
volumes (writing outputs, meta files and logs where a container would), and records every
call. The real engine is exercised by the integration tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.engine import LABEL_FACTS_RUN, JobRef, JobSpec, Outcome
from orchestrator.errors import EngineUnavailable, ImageError

IMAGE = "sha256:" + "d" * 64


@dataclass
class Script:
    """What the fake job does."""

    code: int | None = 0
    logs: list[bytes] = field(default_factory=lambda: [b"epoch 1\n", b"done\n"])
    outputs: dict[str, bytes] = field(default_factory=lambda: {"w.bin": b"weights"})
    metrics: list[dict[str, Any]] = field(default_factory=list)  # log_metric lines
    env_json: Any = field(default_factory=lambda: {
        "os": "Debian GNU/Linux 12", "python": "3.11.2",
        "packages": [{"name": "numpy", "version": "1.24.2"}], "lock_problems": []})
    create_fails: bool = False
    lost: str | None = None  # the engine goes away after the job started
    timed_out: bool = False
    interrupted: bool = False
    oom: bool = False
    stderr_tail: str = "a warning on stderr\n"
    during: Callable[[JobSpec], None] | None = None  # run while the job "runs"


class FakeEngine:
    name = "fake"

    def __init__(self, script: Script | None = None,
                 images: dict[str, str] | None = None) -> None:
        """``images``: reference -> image id the engine holds (besides IMAGE itself)."""
        self.script = script or Script()
        self.images = {ref: {"id": i, "repo_digests": [], "labels": {}, "size": 1, "tags": []}
                       for ref, i in {IMAGE: IMAGE, **(images or {})}.items()}
        self.calls: list[tuple[str, Any]] = []
        self.built: list[dict[str, Any]] = []
        self.jobs: dict[str, JobSpec] = {}
        self.running: set[str] = set()

    # -- Executor ------------------------------------------------------------------------------

    def host(self, gpus: dict[str, Any] | None) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(("host", gpus))
        return {"os": "FakeOS", "kernel": "6.1", "cpu": {"model": "FakeCPU", "flags": ["avx"]},
                "docker": "0", "engine": "fake", "gpus": [], "gpus_assigned": []}, []

    def run(self, job: JobSpec, started: Callable[[str], None],
            on_log: Callable[[bytes], None]) -> Outcome:
        s = self.script
        if LABEL_FACTS_RUN in job.labels:  # the image's facts, captured from outside
            self.calls.append(("facts", job))
            if s.env_json is None:
                return Outcome(job_id="facts", code=1, stderr_tail="python3: not found")
            on_log(b"REPRO-FACTS " + json.dumps(s.env_json).encode() + b"\n")
            return Outcome(job_id="facts", code=0)
        self.calls.append(("run", job))
        if s.create_fails:
            raise EngineUnavailable("create container: the engine refused: no space")
        job_id = f"job-{len(self.jobs)}"
        self.jobs[job_id] = job
        self.running.add(job_id)
        outcome = Outcome(job_id=job_id, host=self.host(job.gpus)[0])
        started(job_id)
        volumes = {v.name: v.source for v in job.volumes}
        for chunk in s.logs:
            on_log(chunk)
        for rel, data in s.outputs.items():
            path = Path(volumes["outputs"]) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        meta = Path(volumes["meta"])
        if s.env_json is not None:
            (meta / "env.json").write_text(json.dumps(s.env_json))
        if s.metrics:
            (meta / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in s.metrics))
        if s.during:
            s.during(job)
        self.running.discard(job_id)
        if s.lost:
            outcome.lost = s.lost
            return outcome
        outcome.timed_out, outcome.interrupted = s.timed_out, s.interrupted
        if not (s.timed_out or s.interrupted):
            outcome.code, outcome.oom_killed = s.code, s.oom
        outcome.stderr_tail = s.stderr_tail
        return outcome

    def find(self, labels: dict[str, str]) -> list[JobRef]:
        return [JobRef(jid, job.labels, jid in self.running) for jid, job in self.jobs.items()
                if all(job.labels.get(k) == v for k, v in labels.items())]

    def cancel(self, job_id: str, grace_s: float) -> None:
        self.calls.append(("cancel", job_id))
        self.running.discard(job_id)

    def cleanup(self, job_id: str) -> None:
        self.calls.append(("cleanup", job_id))
        self.jobs.pop(job_id, None)

    # -- ImageBackend ----------------------------------------------------------------------------

    def image(self, ref: str) -> dict[str, Any] | None:
        if ref.startswith("img@"):
            return {"id": IMAGE, "repo_digests": [ref], "labels": {}, "size": 1, "tags": []}
        return self.images.get(ref)

    def pull(self, ref: str) -> str:
        self.calls.append(("pull", ref))
        raise ImageError(f"pull {ref}: the fake has no registry")

    def push(self, image_id: str, repository: str, tag: str,
             on_line: Callable[[str], None]) -> str:
        raise ImageError("the fake has no registry")

    def save(self, image_id: str) -> Iterator[bytes]:
        raise ImageError("the fake saves nothing")

    def load(self, archive: Iterable[bytes]) -> list[str]:
        b"".join(archive)
        return []

    def tag(self, image_id: str, repo: str, tag: str) -> None:
        self.calls.append(("tag", (image_id, repo, tag)))
        known = next((i for i in self.images.values() if i["id"] == image_id), None)
        if known is not None:
            self.images[f"{repo}:{tag}"] = known

    def remove_image(self, ref: str) -> None:
        self.images.pop(ref, None)

    def build(self, context: Path, tag: str, buildargs: dict[str, str],
              labels: dict[str, str], on_line: Callable[[str], None],
              dockerfile: Path | None = None) -> str:
        """Builds an image whose id is the build's inputs' hash (so, like BuildKit with a
        warm cache, the same inputs give the same id)."""
        self.calls.append(("build", tag))
        self.built.append({"context": context, "buildargs": dict(buildargs),
                           "dockerfile": dockerfile})
        image_id = "sha256:" + hashlib.sha256(json.dumps(
            [str(context), buildargs, labels]).encode()).hexdigest()
        self.images[image_id] = self.images[tag] = {
            "id": image_id, "repo_digests": [], "labels": dict(labels), "size": 1, "tags": [tag]}
        return image_id

    def commit(self, job_id: str, changes: list[str]) -> str:
        self.calls.append(("commit", changes))
        image_id = "sha256:" + hashlib.sha256(json.dumps([job_id, changes]).encode()).hexdigest()
        labels = dict(c[6:].split("=", 1) for c in changes if c.startswith("LABEL "))
        self.images[image_id] = {"id": image_id, "repo_digests": [], "labels": labels,
                                 "size": 1, "tags": []}
        return image_id

    def import_rootfs(self, tar_path: Path, repository: str, tag: str,
                      changes: list[str]) -> str:
        raise ImageError("the fake imports nothing")

    def version(self) -> dict[str, Any]:
        return {"version": "0", "api": "1.41", "os": "linux", "arch": "amd64", "kernel": "6.1",
                "engine": "fake"}
