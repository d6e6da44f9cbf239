"""The executor seam: where a run's container runs, and where its images live.

The run lifecycle (``runner``) decides statuses and records; an ``Executor`` runs one job to
its end and says how it ended. ``JobSpec`` is backend-neutral: logical volumes, resources
with a GPU *requirement* (the executor picks devices where the job runs), labels, a
timeout. ``ImageBackend`` holds images by id. Backends are plain classes registered in
``EXECUTORS`` by name, as pre-commit registers its languages: the Docker engine
(``docker.py``, through the docker SDK) serves both ``docker`` and ``podman`` (podman's
Docker-compatible API socket); Slurm and Kubernetes come as further modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import RecipeError, UsageError

if TYPE_CHECKING:
    from ..gpu import GPU

LABEL_RUN = "org.repro.run"
# every job's hostname: a random one (Docker's default: the container id) ends up in what
# jobs write (TensorBoard names its event files after it), so no two runs could agree
CONTAINER_HOSTNAME = "repro"
LABEL_STORE = "org.repro.store"
LABEL_RECIPE = "org.repro.recipe"
LABEL_SWEEP = "org.repro.sweep"
# a throwaway container that captures an image's facts for a run (never counted as the run's)
LABEL_FACTS_STORE = "org.repro.facts.store"
LABEL_FACTS_RUN = "org.repro.facts.run"


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached repro while a job ran (raised in the main thread)."""


class WaitTimeout(Exception):
    """The job did not end within its deadline (internal to executors)."""


class BuildFailed(RecipeError):
    """A build step failed: ``step`` (number, instruction as the engine printed it) when the
    engine said which, and the last lines the step printed."""

    def __init__(self, error: str, step: tuple[int, str] | None, tail: list[str]) -> None:
        super().__init__(error)
        self.error, self.step, self.tail = error, step, list(tail)


@dataclass(frozen=True)
class Volume:
    """A logical volume of a job: what it is, where its bytes are here, where the job sees
    them. Names: code, lib, run, outputs, meta, lock, input:NAME, secret:NAME."""

    name: str
    source: Path
    target: str
    writable: bool = False


@dataclass
class JobSpec:
    """One job, whatever runs it."""

    run_id: str
    image: str  # an image id, sha256:...
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    user: str = "65534:65534"  # nobody:nogroup; never root
    workdir: str = "/repro/outputs"
    cpus: float = 1.0
    memory_bytes: int = 2 << 30
    gpus: dict[str, Any] | None = None  # the requirement {count, model, min_memory_gb}
    network: str = "none"
    timeout_s: float | None = None
    tmp_bytes: int | None = None  # a tmpfs at /tmp and /var/tmp of this size
    labels: dict[str, str] = field(default_factory=dict)
    stop_grace_s: float = 10.0
    hostname: str = CONTAINER_HOSTNAME
    strict: bool = False  # refuse to run where a limit cannot be enforced (launch --strict)


@dataclass
class Outcome:
    """How a job ended. ``code`` is set when the job exited; otherwise one of the flags or
    ``lost`` (the engine went away: why) says what happened."""

    job_id: str
    code: int | None = None
    oom_killed: bool = False
    oom_limit: str | None = None  # what held the memory, where not the spec's alone (Slurm's)
    timed_out: bool = False
    interrupted: bool = False  # Ctrl-C or SIGTERM reached repro; the job was stopped
    lost: str | None = None
    stderr_tail: str = ""
    host: dict[str, Any] = field(default_factory=dict)  # facts of where it ran
    gpus: list[GPU] = field(default_factory=list)  # the devices it was given


@dataclass(frozen=True)
class JobRef:
    """A job an executor knows of (found by its labels)."""

    id: str
    labels: dict[str, str]
    running: bool


class Executor(Protocol):
    """Runs jobs. ``run`` raises only when the job could not be created, or when
    ``started`` raises (the job is then removed); everything after is in the Outcome."""

    name: str

    def host(self, gpus: dict[str, Any] | None) -> tuple[dict[str, Any], list[GPU]]:
        """Facts of where a job would run now, and the GPUs it would get (GPUUnavailable
        when the requirement cannot be met)."""
        ...

    def run(self, job: JobSpec, started: Callable[[str], None],
            on_log: Callable[[bytes], None]) -> Outcome: ...

    def find(self, labels: dict[str, str]) -> list[JobRef]: ...

    def cancel(self, job_id: str, grace_s: float) -> None: ...

    def cleanup(self, job_id: str) -> None: ...


class ImageBackend(Protocol):
    """Images by id: inspect, pull and push by digest, archive and load, build, tag."""

    def image(self, ref: str) -> dict[str, Any] | None: ...

    def pull(self, ref: str) -> str: ...

    def push(self, image_id: str, repository: str, tag: str,
             on_line: Callable[[str], None]) -> str: ...

    def save(self, image_id: str) -> Iterator[bytes]: ...

    def load(self, archive: Iterable[bytes]) -> list[str]: ...

    def tag(self, image_id: str, repo: str, tag: str) -> None: ...

    def remove_image(self, ref: str) -> None: ...

    def build(self, context: Path, tag: str, buildargs: dict[str, str],
              labels: dict[str, str], on_line: Callable[[str], None],
              dockerfile: Path | None = None) -> str: ...

    def commit(self, job_id: str, changes: list[str]) -> str: ...

    def import_rootfs(self, tar_path: Path, repository: str, tag: str,
                      changes: list[str]) -> str: ...

    def version(self) -> dict[str, Any]: ...


class Engine(Executor, ImageBackend, Protocol):
    """What runs jobs on this machine and holds their images (Docker, podman)."""


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (made if absent) for all processes here."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def repository_of(ref: str) -> str:
    """'host:5000/name:tag' or 'name@sha256:...' -> the repository (a port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _docker() -> Engine:
    from .docker import DockerEngine

    return DockerEngine()


def _podman() -> Engine:
    from .docker import DockerEngine

    return DockerEngine(podman=True)


def _charliecloud() -> Engine:
    from .charliecloud import CharliecloudEngine

    return CharliecloudEngine()


EXECUTORS: dict[str, Callable[[], Engine]] = {"docker": _docker, "podman": _podman,
                                              "charliecloud": _charliecloud}


def connect(name: str | None = None) -> Engine:
    """This machine's engine ``name`` (default: REPRO_ENGINE, else REPRO_EXECUTOR when it
    names an engine, else docker); nothing is contacted until the first call. REPRO_EXECUTOR
    naming a scheduler (slurm) still resolves images with this machine's engine; whether it
    names anything known is ``scheduler.where``'s to say (the engine knows no schedulers)."""
    from ..settings import executor

    where = executor()
    given = name or os.environ.get("REPRO_ENGINE", "").strip()
    name = given or (where if where in EXECUTORS else "docker")
    if name not in EXECUTORS:
        raise UsageError(f"engine {name!r} is not one of: {', '.join(sorted(EXECUTORS))}; "
                         "set REPRO_ENGINE to one of them (or REPRO_EXECUTOR: repro launch "
                         "--help)")
    return EXECUTORS[name]()
