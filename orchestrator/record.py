"""The persisted documents: ``ResolvedSpec`` and ``RunRecord`` (schema_version 1).

Replay is built from these alone, so everything that determines a run's result lives here.

Over 500 lines: the whole stored format in one place, the record and every shape inside it
(environment facts, a verdict, a diagnosis), which ``SCHEMA_VERSION`` covers together.
"""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)

from .errors import ExitCode
from .untrusted import relative_path_problem

SCHEMA_VERSION = 1

# The shapes of every identifier repro writes. A record from elsewhere (a bundle, another
# store) that breaks one is refused before any of its fields becomes a path or a query.
RunId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
SweepId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                        max_length=128)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                           max_length=256)]
EnvValue = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


def _relative(path: str) -> str:
    problem = relative_path_problem(path)
    if problem:
        raise ValueError(f"{path[:80]!r} {problem}")
    return path


RelPath = Annotated[str, AfterValidator(_relative)]


def utc_now() -> str:
    """ISO 8601 UTC with a Z, millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # handed to a scheduler (Slurm), waiting for a node
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def exit_code(self) -> ExitCode:
        """The `repro` command's exit code for a run that ended so (docs/reference.md: Exit
        codes)."""
        return {RunStatus.SUCCEEDED: ExitCode.OK, RunStatus.FAILED: ExitCode.JOB_FAILED,
                RunStatus.TIMEOUT: ExitCode.TIMEOUT, RunStatus.INTERRUPTED: ExitCode.INTERRUPTED,
                }.get(self, ExitCode.ENVIRONMENT)  # lost, or not finished


ALLOWED = {
    RunStatus.PENDING: {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED,
                        RunStatus.INTERRUPTED, RunStatus.LOST},
    # the scheduler's own endings (a job cancelled, timed out or lost before it started)
    RunStatus.QUEUED: {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.INTERRUPTED,
                       RunStatus.TIMEOUT, RunStatus.LOST},
    RunStatus.RUNNING: {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED,
                        RunStatus.TIMEOUT, RunStatus.LOST},
}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_Doc):
    ref: str | None = None  # what the spec said (tag, ref@digest) or the recipe's local tag
    digest: Digest  # the image ID (config digest) the container ran
    repo_digest: Digest | None = None  # registry manifest digest, when it came from one
    recipe: str | None = None  # recipe folder, relative to the spec, when built from images/
    recipe_digest: Digest | None = None
    archive: Hex64 | None = None  # sha256 of its archive index in the store (image_archive.py)


class CodeRef(_Doc):
    path: str  # folder the snapshot was taken of
    repo: str | None = None  # git toplevel
    subdir: str = "."  # path of the snapshot inside the repo
    commit: str | None = None
    dirty: bool = False
    snapshot: Digest  # of the deterministic tar in the artifact store
    diff: Digest | None = None  # of `git diff HEAD` (plus untracked list) when dirty
    files: int = 0


class InputRef(_Doc):
    path: str
    kind: Literal["file", "dir"] = "file"
    sha256: Hex64  # file: sha256 of the bytes; dir: sha256 of the canonical file manifest
    size: Annotated[int, Field(ge=0)]
    stored: bool = False  # a copy is in the artifact store (file inputs under the limit)
    mount: RelPath | None = None  # also seen there, relative to the working folder


class PackagesRef(_Doc):
    lock: str  # path as given
    sha256: Hex64
    pins: dict[str, str]  # name (normalized) -> version


class ResourcesRef(_Doc):
    cpus: Annotated[float, Field(gt=0, le=1024)]
    threads: Annotated[int, Field(ge=1, le=1024)]
    memory: str
    memory_bytes: Annotated[int, Field(ge=6 << 20)]  # Docker's minimum; 0 would mean none
    gpus: dict[str, Any] | None = None  # {count, model, min_memory_gb}


class ResumeRef(_Doc):
    checkpoints: str  # where the job writes them, {step} for the step
    args: list[str]  # appended to the command to resume: {path}, {step}


class ResolvedSpec(_Doc):
    image: ImageRef
    code: CodeRef
    inputs: dict[Name, InputRef] = {}
    packages: PackagesRef | None = None
    command: list[str]
    params: dict[str, Any] = {}
    seed: Annotated[int, Field(ge=0, lt=2**32)]
    env: dict[EnvName, EnvValue] = {}  # everything set in the container but secret values
    secrets: list[EnvName] = []  # names only; values are never recorded
    # secrets also set as environment variables (None: a record from before secrets were
    # files, when every secret was an environment variable)
    secret_env: list[EnvName] | None = None
    resources: ResourcesRef
    network: Literal["none", "bridge"] = "none"
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    determinism: Literal["strict", "off"] = "strict"
    outputs: list[str] = ["**"]  # include globs; the default: what the job created or changed
    outputs_exclude: list[str] = []  # files matching these are listed as excluded
    # where the job ran: "outputs" (records before 0.9: an empty /repro/outputs, the code
    # read-only at /repro/code) or "project" (a writable copy of the code snapshot at
    # /repro/code, also named /repro/outputs, the code root importable)
    layout: Literal["outputs", "project"] = "outputs"
    compare: list[Literal["outputs", "metrics", "logs"]] = ["outputs", "metrics"]
    log_normalize: list[str] = []  # regexes removed from both logs before they are compared
    metrics_from_log: dict[str, str] = {}  # metric name -> regex with a group named value
    resume: ResumeRef | None = None  # how the job resumes from a checkpoint (partial.py)


class FileRef(_Doc):
    sha256: Hex64
    size: Annotated[int, Field(ge=0)]


# -- shapes of the open parts -----------------------------------------------------------------
# The environment, a verdict and a diagnosis travel as these models. Unknown keys are
# allowed (a newer repro may record more), and a verdict's and a diagnosis' shapes dump only
# the fields they were given: a record from elsewhere, read and written again, keeps their
# JSON (a bundle's record is compared so).

class _Shape(BaseModel):
    # defer_build: a shape's validator is built on first use. A diagnosis is then built only
    # by the commands that read one; the verdict and environment are built with RunRecord
    model_config = ConfigDict(extra="allow", defer_build=True)


class _Given(_Shape):
    """A shape that dumps only the fields it was given (and those assigned since)."""

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        given = self.model_fields_set | set(self.model_extra or ())
        return {k: v for k, v in dumped.items() if k in given}


Finite = Annotated[float, Field(allow_inf_nan=False)]
Number = int | Finite  # an int stays an int (a tolerance in ULPs)


class CPUFacts(_Shape):
    model: str = ""
    vendor: str = ""
    arch: str = ""
    count: int | None = None
    flags: list[str] = []


class GPUFacts(_Shape):
    index: int = 0
    name: str = ""
    uuid: str = ""
    memory_gb: float = 0.0
    driver: str = ""
    cuda: str = ""


class HostFacts(_Shape):
    hostname: str = ""  # the machine that ran the job (a Slurm node is not where it launched)
    os: str = ""
    kernel: str = ""
    cpu: CPUFacts = Field(default_factory=CPUFacts)
    memory_gb: float | None = None
    docker: str | None = None
    docker_api: str | None = None
    gpus: list[GPUFacts] = []
    gpus_assigned: list[str] = []
    repro: str | None = None
    engine: str | None = None  # docker, podman, charliecloud ("": an older record)
    runtime: str | None = None  # "charliecloud 0.31"; None: the engine's own (docker)
    # what held each of the job's limits where the runtime chose among ways (Charliecloud):
    # memory, cpu_quota, cores, network
    limits: dict[str, str] = {}


class Package(_Shape):
    name: str
    version: str


class ContainerFacts(_Shape):
    os: str = ""
    os_release: dict[str, str] = {}
    python: str | None = None
    packages: list[Package] = []
    lock_problems: list[str] = []
    lock_skipped: list[str] = []  # lock lines whose markers do not hold in this container
    # "image": os..lock_skipped come from a throwaway container of the image that repro ran
    # itself; "job": from /repro/meta as the job left it (it could rewrite them); "": an
    # older record. seeded and determinism_warnings are always the job's own report.
    captured: str = ""
    hostname: str = ""  # what repro named the container ("": an older record, random)
    machine_id: str = ""  # the /etc/machine-id repro gave it ("": none given)
    seeded: list[str] = []  # what the runtime seeded without the job asking (strict mode)
    determinism_warnings: list[str] = []  # ops torch ran without a deterministic kernel


class Environment(_Shape):
    host: HostFacts = Field(default_factory=HostFacts)
    container: ContainerFacts = Field(default_factory=ContainerFacts)


class OutputDiff(_Given):
    path: str
    original: FileRef
    replay: FileRef
    renamed: str | None = None  # the replay's name for it, when paired by pattern
    content: dict[str, Any] | None = None  # what differs inside (``content.explain``)
    tolerance: dict[str, Number] | None = None  # its own: {"ulp": N} or {"abs": X}
    within_tolerance: bool | None = None


class Renamed(_Given):
    original: str
    replay: str


class OutputsVerdict(_Given):
    identical: list[str] = []
    renamed: list[Renamed] = []  # identical bytes under a name that carries time or host
    differ: list[OutputDiff] = []
    missing: list[str] = []
    extra: list[str] = []


class MetricDelta(_Given):
    name: str
    original: Finite | None = None
    replay: Finite | None = None
    delta: Finite | None = None
    tolerance: Number | None = None
    ok: bool = False


class EnvChange(_Given):
    """One fact that differs: a value (``original`` -> ``replay``) or a set (``added``,
    ``removed``, and ``changed`` members)."""

    fact: str
    hint: str = ""
    original: Any = None
    replay: Any = None
    added: list[Any] | dict[str, Any] = []
    removed: list[Any] | dict[str, Any] = []
    changed: dict[str, tuple[Any, Any]] = {}

    @property
    def of_a_value(self) -> bool:
        return "original" in self.model_fields_set or "replay" in self.model_fields_set

    @property
    def described(self) -> str:
        """``a -> b`` for a value, ``+N -M ~K`` for a set."""
        if self.of_a_value:
            return f"{self.original} -> {self.replay}"
        parts = [f"+{len(self.added)}", f"-{len(self.removed)}"]
        if "changed" in self.model_fields_set:
            parts.append(f"~{len(self.changed)}")
        return " ".join(parts)


class Outcome(_Given):
    original: str
    replay: str


class LogDifference(_Given):
    line: int
    original: str | None = None
    replay: str | None = None


class LogsVerdict(_Given):
    """The two runs' output streams, once the spec's ``log_normalize`` is applied."""

    identical: bool = False
    normalized: list[str] = []
    lines: int | None = None
    missing: str | None = None  # "original" or "replay": that run has no stored log
    first_difference: LogDifference | None = None


class SeriesPart(_Given):
    """Where a metric's series parts ways: the first step whose values differ."""

    step: int
    original: float | None = None
    replay: float | None = None
    steps: list[int] = []  # how many steps each run logged


Result = Literal["identical", "differs", "within-tolerance", "nothing-compared",
                 "identical-prefix", "identical-segment"]


class Verdict(_Given):
    """Did a replay reproduce its original (``verdicts.verdict``)? Stored in the replay's
    record, the same model from the judging to the terminal, JUnit and the dashboard."""

    result: Result
    original: RunId | None = None
    replay: RunId | None = None
    outcome: Outcome | None = None
    outputs: OutputsVerdict = Field(default_factory=OutputsVerdict)
    metrics: list[MetricDelta] = []
    logs: LogsVerdict | None = None
    compared: list[str] = []
    tolerances: dict[str, Number] = {}
    environment: list[EnvChange] = []
    series: dict[str, SeriesPart] = {}  # metric series that part ways
    checked_at: str | None = None
    # part of a run verified (``partial.py``): a prefix, the points up to ``through_step``
    # of the original's ``of_steps`` (the outputs not compared); a segment, resumed from the
    # checkpoint of ``from_step`` up to the one of ``through_step`` (that one compared)
    through_step: int | None = None
    of_steps: int | None = None
    from_step: int | None = None


DIAGNOSIS_SCHEMA = 1


class Finding(_Given):
    """What a diagnosis found about one subject: an output path, "metric NAME" or
    "(outcome)"; its causes as the reasoning named them, with the places they move."""

    subject: str
    sentence: str
    causes: list[dict[str, Any]] = []
    fixes: list[str] = []
    noise_here: bool | None = None  # it differs between plain replays on this host
    kind: str | None = None  # without a cause: "changed", "rare" or "inconclusive"
    inconclusive: str | None = None
    how_much: str | None = None  # how far it moved in a plain replay


class DiagnosisExperiment(_Given):
    name: str
    title: str
    runs: list[RunId] = []
    factor: str | None = None  # the control let go
    controls: list[str] = []  # the controls held on
    agree: bool | None = None  # the controlled pair (None: a control broke the job)
    failed: str | None = None  # how the job ended when not as the plain replays did


class DiagnosisRun(_Given):
    """One replay a diagnosis ran, and how it compared with the original."""

    run: RunId
    experiment: str = ""
    label: str = ""
    controls: list[str] = []
    status: str = ""
    versus_original: str = ""
    seconds: float = 0.0


class CauseSubject(_Given):
    subject: str
    where: str = ""
    how_much: str | None = None


class DiagnosisCause(_Given):
    cause: str
    line: str
    subjects: list[CauseSubject] = []
    fixes: list[str] = []


class DiagnosisCost(_Given):
    replays: int = 0
    seconds: float = 0.0
    one_replay_s: float = 0.0
    multiple: float | None = None  # of one replay's time


class ShownChange(EnvChange):
    """An environment change as a diagnosis keeps it, with its text for people."""

    shown: str = ""


class Diagnosis(_Given):
    """`repro diagnose`'s report, stored beside the run it explains; its shape is checked
    before it is stored, also when it comes from another store (`repro pull`). A report
    stored before causes were grouped has no ``causes`` (``grouped_causes`` makes them)."""

    schema_version: int = DIAGNOSIS_SCHEMA
    run: RunId
    result: Literal["reproduces", "nondeterministic", "changed", "fails", "inconclusive"]
    created_at: str
    host: str | None = None
    user: str | None = None
    replays: int = 0
    experiments: list[DiagnosisExperiment] = []
    runs: list[DiagnosisRun] = []
    skipped: dict[str, str] = {}
    causes: list[DiagnosisCause] = []  # each cause once, the subjects it explains under it
    findings: list[Finding] = []
    environment: list[ShownChange] = []
    cost: DiagnosisCost = Field(default_factory=DiagnosisCost)

    @property
    def grouped_causes(self) -> list[DiagnosisCause]:
        if "causes" in self.model_fields_set:
            return self.causes
        return [DiagnosisCause(cause="", line=f.sentence, fixes=f.fixes)
                for f in self.findings]


class Judging(_Doc):
    """How a replay that runs elsewhere (a scheduler's node) is judged there: what the
    command that sent it asked. Apart from where it was placed (``RunRecord.executor``)."""

    tolerances: dict[str, float] = {}
    strict_env: bool = False


class RunRecord(_Doc):
    schema_version: int = SCHEMA_VERSION
    id: RunId
    name: Name
    status: RunStatus = RunStatus.PENDING
    exit_code: int | None = None
    reason: str | None = None  # why it ended as it did, one line
    spec: dict[str, Any]  # the spec as loaded (with --param overrides applied)
    spec_path: str | None = None
    spec_digest: Digest
    resolved: ResolvedSpec
    hermetic: bool = True  # False when the job had network access
    environment: Environment = Field(default_factory=Environment)
    params: dict[str, Any] = {}
    metrics: dict[str, Finite] = {}
    outputs: dict[RelPath, FileRef] = {}
    skipped_outputs: dict[str, str] = {}  # path -> why it was not stored (symlink, ...)
    logs: FileRef | None = None
    stderr_tail: str = ""
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    replay_of: RunId | None = None
    # a replay `repro diagnose` ran as an experiment on this run: left out of run lists
    # (`repro runs --experiments` shows them), removed with the run it diagnosed
    diagnosis_of: RunId | None = None
    sweep_id: SweepId | None = None  # set when the run is one point of `repro sweep`
    verdict: Verdict | None = None
    warnings: list[str] = []
    user: Annotated[str, Field(max_length=256)] | None = None  # who launched it
    host: Annotated[str, Field(max_length=256)] | None = None  # the machine it launched from
    # where the run went when not to this machine's engine: {"kind": "slurm", "job_id", ...};
    # never part of spec_digest (where a run goes is not what it is)
    executor: dict[str, Any] | None = None
    judging: Judging | None = None  # a replay judged on a scheduler's node: how

    @model_validator(mode="after")
    def _placed_apart_from_judged(self) -> RunRecord:
        """Records written before ``judging`` kept a node-judged replay's tolerances and
        --strict-env in ``executor``, beside where it was placed: moved out on reading (an
        after-validator: a before one would make every record's JSON a dict first)."""
        ex = self.executor
        if ex is not None and ("tolerances" in ex or "strict_env" in ex):
            self.judging = Judging(tolerances=ex.get("tolerances") or {},
                                   strict_env=bool(ex.get("strict_env")))
            self.executor = {k: v for k, v in ex.items()
                             if k not in ("tolerances", "strict_env")} or None
        return self



def read_record(doc: str | bytes) -> RunRecord:
    """A stored record, read tolerantly: a field this repro does not know (written by a newer
    one of the same schema version) is left out rather than refused. Records are written
    with every field known (``extra="forbid"``); a newer *schema* is the caller's error."""
    try:
        return RunRecord.model_validate_json(doc)
    except ValidationError as e:
        if any(err["type"] != "extra_forbidden" for err in e.errors()):
            raise
    return RunRecord.model_validate(_prune(RunRecord, json.loads(doc)))


def _prune(model: type[BaseModel], data: Any) -> Any:
    """``data`` less the keys ``model`` (and the models inside it) do not declare."""
    if not isinstance(data, dict):
        return data
    fields = model.model_fields
    return {k: _prune_value(fields[k].annotation, v) for k, v in data.items() if k in fields}


def _prune_value(ann: Any, value: Any) -> Any:
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _prune_value(args[0], value)
    if origin in (Union, types.UnionType):
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, _Doc) and isinstance(value, dict):
                return _prune(arg, value)
        return value
    if origin is dict and isinstance(value, dict):
        return {k: _prune_value(args[1], v) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [_prune_value(args[0], v) for v in value]
    if isinstance(ann, type) and issubclass(ann, _Doc):
        return _prune(ann, value)
    return value
