"""Where a run goes: this machine's engine, or a cluster's scheduler.

``Executor`` (engine/) is how a container runs on a machine; a ``Scheduler`` is who decides
the machine: it takes a run recorded here (resolved, ``pending``) and hands it to a cluster
(``submit`` records it ``queued``), follows it to its end, reconciles the cluster's own
endings into the record, cancels it, and renders what it would submit. Schedulers are
plain modules registered in ``SCHEDULERS`` by name, as ``EXECUTORS`` and ``RECORD_STORES``
register theirs, and imported only when a run goes there: adding one is one module and one
entry here. ``--executor`` (else ``REPRO_EXECUTOR``) is parsed once, into a ``Where``.

``launch`` and ``replay_elsewhere`` are what the commands call; a replay sent to a
scheduler is judged on its node (``replay.judge_on_node``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import settings
from .engine import EXECUTORS
from .errors import ExitCode, ReproError, UsageError
from .record import RunRecord

if TYPE_CHECKING:
    from .runner import Hooks
    from .spec import LoadedSpec
    from .store import Store

# name: the module that implements ``Scheduler`` (imported when a run goes there)
SCHEDULERS: dict[str, str] = {"slurm": "orchestrator.slurm", "k8s": "orchestrator.k8s"}
LOCAL = ("local", *EXECUTORS)  # this machine's engine (docker and podman name it)


class Scheduler(Protocol):
    """A cluster's scheduler, as a module of functions (``slurm.py``, ``k8s.py``)."""

    TITLE: str  # its name for people: "Slurm"
    SUBMITS: bool  # False: it renders what it would submit, and submits nothing (k8s)

    def options(self, flags: dict[str, Any]) -> Any:
        """Its options from the command's flags and its own ``REPRO_*`` variables, checked."""

    def require_shared_store(self) -> None:
        """Refuse stores its nodes cannot reach (the embedded default is this machine's)."""

    def render(self, record: RunRecord, store: Store, options: Any) -> tuple[str, Any]:
        """What it would submit: (text for people, a document for --json or None)."""

    def submit(self, record: RunRecord, store: Store, options: Any,
               on_line: Callable[[str], None]) -> RunRecord:
        """Record the run and hand it over: ``queued`` (or ended, with the refusal)."""

    def follow(self, store: Store, record: RunRecord, on_line: Callable[[str], None],
               on_log: Callable[[bytes], None]) -> RunRecord:
        """Until the run ends: status lines, its live log, the scheduler's endings."""

    def reconcile(self, store: Store, record: RunRecord) -> RunRecord:
        """The record, with the scheduler's ending applied when the job is over."""

    def cancel(self, store: Store, records: list[RunRecord]) -> list[RunRecord]:
        """Stop the runs' jobs; returns them once each has ended."""


class ArrayScheduler(Scheduler, Protocol):
    """A scheduler that can also run a sweep as one array of jobs (Slurm's ``--array``):
    an optional capability, found by ``arrays``."""

    def submit_array(self, records: list[RunRecord], store: Store, options: Any,
                     parallel: int, on_line: Callable[[str], None]) -> str:
        """Every record queued as one task of an array (at most ``parallel`` at once)."""

    def follow_all(self, store: Store, records: list[RunRecord],
                   on_done: Callable[[RunRecord], None]) -> list[RunRecord]:
        """Until every run ends, each reported once as it ends."""


@dataclass(frozen=True)
class Where:
    """Where runs go: ``scheduler`` None is this machine's engine."""

    scheduler: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)  # the command's scheduler flags

    @property
    def here(self) -> bool:
        return self.scheduler is None


if TYPE_CHECKING:  # mypy checks each registered module against the protocol
    from . import k8s, slurm

    _registered: tuple[Scheduler, ...] = (slurm, k8s)
    _arrays: tuple[ArrayScheduler, ...] = (slurm,)


def where(given: str | None = None, **flags: Any) -> Where:
    """``--executor`` (else ``REPRO_EXECUTOR``, else local) and the scheduler flags given."""
    name = settings.executor(given)
    if name in LOCAL:
        return Where(None, flags)
    if name not in SCHEDULERS:
        raise UsageError(f"--executor {name!r}: use local (this machine's engine: docker or "
                         f"podman) or one of: {', '.join(SCHEDULERS)}")
    return Where(name, flags)


def get(name: str) -> Scheduler:
    module: Scheduler = importlib.import_module(SCHEDULERS[name])
    return module


def arrays(name: str) -> ArrayScheduler | None:
    """Scheduler ``name``, when it runs sweeps as arrays of jobs."""
    module = get(name)
    return module if hasattr(module, "submit_array") else None  # type: ignore[return-value]


def of(record: RunRecord) -> Scheduler | None:
    """The scheduler a run was submitted to (None: it ran on a machine's engine)."""
    kind = (record.executor or {}).get("kind")
    return get(kind) if isinstance(kind, str) and kind in SCHEDULERS else None


class Detached(ReproError):
    """Ctrl-C while following a submitted run: the run goes on; this says how to reach it."""

    exit_code = ExitCode.INTERRUPTED


@dataclass
class Launched:
    """A launch's outcome: the run's record, or (a dry run) what would be submitted."""

    record: RunRecord | None = None
    store: Store | None = None
    rendered: tuple[str, Any] | None = None


def launch(loaded: LoadedSpec, where_: Where, open_store: Callable[[], Store], *,
           allow_dirty: bool, strict: bool, hooks: Hooks, detach: bool = False,
           dry_run: bool = False) -> Launched:
    """Run a spec where ``where_`` says: here (the engine, to its end), or resolved here and
    submitted (followed to its end unless ``detach``; ``dry_run``: rendered, not recorded)."""
    from .engine import connect
    from .runner import launch as launch_here
    from .runner import prepare_launch

    if where_.here:
        if dry_run:
            raise UsageError("--dry-run renders what a scheduler would run: add --executor "
                             f"{' or '.join(SCHEDULERS)}")
        store = open_store()
        return Launched(launch_here(loaded, store, connect(), allow_dirty=allow_dirty,
                                    strict=strict, hooks=hooks), store)
    sched = get(str(where_.scheduler))
    if not sched.SUBMITS and not dry_run:
        raise UsageError(f"--executor {where_.scheduler} renders only (add --dry-run); repro "
                         "does not submit there yet")
    if sched.SUBMITS:
        sched.require_shared_store()
    options = sched.options(where_.flags)
    store = open_store()
    record, _ = prepare_launch(loaded, store, connect(), allow_dirty=allow_dirty,
                               strict=strict, hooks=hooks, local_gpus=False)
    if dry_run:
        return Launched(store=store, rendered=sched.render(record, store, options))
    record = sched.submit(record, store, options, hooks.on_line)
    if not (detach or record.status.terminal):
        record = follow(store, record, hooks)
    return Launched(record, store)


def replay_elsewhere(where_: Where, store: Store,
                     hooks: Hooks) -> Callable[[RunRecord], RunRecord] | None:
    """For replay and verify: None to run here, else what submits the replay's record to
    the scheduler and follows it to its end (the node writes the verdict)."""
    if where_.here:
        return None
    sched = get(str(where_.scheduler))
    if not sched.SUBMITS:
        raise UsageError(f"--executor {where_.scheduler} renders a launch only; replay here "
                         f"or on {' or '.join(n for n in SCHEDULERS if get(n).SUBMITS)}")
    sched.require_shared_store()
    options = sched.options(where_.flags)

    def submitted(record: RunRecord) -> RunRecord:
        record = sched.submit(record, store, options, hooks.on_line)
        return record if record.status.terminal else follow(store, record, hooks)

    return submitted


def follow(store: Store, record: RunRecord, hooks: Hooks) -> RunRecord:
    """Follow a submitted run to its end; Ctrl-C leaves it running (``Detached``)."""
    sched = of(record)
    if sched is None:
        raise UsageError(f"run {record.id} was not submitted to a scheduler; a run on this "
                         "machine's engine is followed by the repro that launched it")
    try:
        done = sched.follow(store, record, hooks.on_line, hooks.on_log)
    except KeyboardInterrupt:
        hooks.on_end()
        job = (record.executor or {}).get("job_id")
        raise Detached(f"run {record.id} goes on as {sched.TITLE} job {job}: "
                       f"`repro wait {record.id}` follows it, `repro cancel {record.id}` "
                       "stops it") from None
    hooks.on_end()
    return done


def cancel(store: Store, records: list[RunRecord]) -> list[RunRecord]:
    """Stop runs submitted to schedulers, each through its own (in one call per scheduler,
    so a sweep's array is cancelled at once)."""
    by: dict[str, list[RunRecord]] = {}
    for record in records:
        if of(record) is None:
            raise UsageError(f"run {record.id} was not submitted to a scheduler; a local run "
                             "stops with Ctrl-C in its terminal")
        by.setdefault(str((record.executor or {})["kind"]), []).append(record)
    done = {r.id: r for name, rs in by.items() for r in get(name).cancel(store, rs)}
    return [done[r.id] for r in records]
