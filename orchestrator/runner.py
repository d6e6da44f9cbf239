"""The run lifecycle: pending -> running -> succeeded | failed | interrupted | timeout | lost.

``launch`` resolves a spec, records the run as ``pending`` (failing to record aborts before any
job exists), then ``execute`` owns every transition: an executor (``engine/``) runs the job and
says how it ended, and this module turns that into a status, a record and stored outputs.
The job is always cleaned up, outputs and logs always ingested, the record always finished.
A job failing is data, not an exception.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from . import capture, settings, workdir
from .engine import (
    Engine,
    Executor,
    ImageBackend,
    Interrupted,
    Outcome,
)
from .engine.image_save import Beside
from .errors import ReproError
from .hashing import shown
from .ingest import LogSink, ingest
from .jobspec import MACHINE_ID, job_spec, machine_id, remove_secrets, run_info, write_secrets
from .live import Latest, LiveMetrics
from .record import HostFacts, RunRecord, RunStatus, utc_now
from .resolve import Resolution, resolve, trace
from .spec import LoadedSpec
from .store import Store


@dataclass
class Hooks:
    on_line: Callable[[str], None] = lambda _: None  # progress for people (stderr)
    on_log: Callable[[bytes], None] = lambda _: None  # the job's own output, live
    on_metrics: Callable[[Latest], None] = lambda _: None  # its latest metrics, live
    on_end: Callable[[], None] = lambda: None  # the job ended: the live line goes
    # the job started (its id on the executor): a caller may load what it will draw the
    # result with while it runs, or keep the id to stop it
    on_start: Callable[[str], None] = lambda _job_id: None
    # set by a sweep's or a diagnosis's Ctrl-C: the run was stopped
    cancel: threading.Event | None = None
    # every metrics update as it comes, unthrottled (a prefix verify stops the job at its
    # last step); the metrics file is polled more often when it is set
    on_points: Callable[[Latest], None] | None = None
    # the finished record, outputs stored, just before its last write: what a caller adds
    # (a replay's verdict) lands in that same write (a team store's member may not change
    # a finished run afterwards, not even its own)
    on_finished: Callable[[RunRecord, list[tuple[str, int, float]]], None] = \
        lambda _record, _series: None  # (the record, its metric series as stored with it)


def new_run_id() -> str:
    """16 random hex digits: short unique prefixes, like git. Order comes from created_at."""
    return secrets.token_hex(8)


def launch(loaded: LoadedSpec, store: Store, engine: Engine, *, allow_dirty: bool = False,
           strict: bool = False, hooks: Hooks | None = None,
           sweep_id: str | None = None) -> RunRecord:
    """Resolve ``loaded``, record it ``pending`` and run it to its end; returns the record.
    Raises only before the run is recorded (a bad spec, GPUs this host lacks, no engine)."""
    hooks = hooks or Hooks()
    record, res = prepare_launch(loaded, store, engine, allow_dirty=allow_dirty,
                                 strict=strict, hooks=hooks, sweep_id=sweep_id,
                                 archive_beside=True)
    return start(record, res, store, engine, hooks)


def prepare_launch(loaded: LoadedSpec, store: Store, engine: Engine, *,
                   allow_dirty: bool = False, strict: bool = False, hooks: Hooks,
                   sweep_id: str | None = None, local_gpus: bool = True,
                   archive_beside: bool = False) -> tuple[RunRecord, Resolution]:
    """Resolve ``loaded`` (its code, inputs and lock into the store) into a new record, not
    yet stored. ``local_gpus``: the GPUs must be on this machine (not for a scheduler's
    node). ``archive_beside``: an image new to the store is archived while the job runs
    (``execute`` does it; see ``resolve``)."""
    requirement = loaded.spec.resources.gpu_requirement
    chosen = None
    if requirement is not None and local_gpus:  # no GPUs to be had: say so before anything
        chosen = engine.host(requirement.model_dump())[1]  # is resolved
    res = resolve(loaded, store, engine, allow_dirty=allow_dirty, strict=strict,
                  on_line=hooks.on_line, archive_beside=archive_beside)
    trace(hooks.on_line, "gpus", "none requested" if requirement is None else (
        "on the node" if chosen is None else ", ".join(
            f"{g.name} ({g.uuid[:16]}, {g.memory_gb:g} GB)" for g in chosen)))
    for w in res.warnings:
        hooks.on_line(f"warning: {w}")
    record = new_record(res, name=loaded.spec.name, spec=loaded.spec.model_dump(mode="json"),
                        spec_path=str(loaded.path.resolve()), sweep_id=sweep_id,
                        warnings=list(res.warnings))
    return record, res


def start(record: RunRecord, res: Resolution, store: Store, executor: Executor,
          hooks: Hooks) -> RunRecord:
    """Record a new run ``pending``, owned by this process, and execute it."""
    store.local.own(record.id)  # before it is recorded: an unfinished run has an owner here
    store.local.note_launched(record.id)  # its replays here are not foreign
    store.runs.insert(record)
    return execute(record, res, store, executor, hooks)


def new_record(res: Resolution, **fields: object) -> RunRecord:
    """A pending record of what ``res`` will run (launch and replay)."""
    return RunRecord.model_validate({
        "id": new_run_id(), "spec_digest": res.spec_digest, "resolved": res.resolved,
        "hermetic": res.resolved.network == "none", "params": dict(res.resolved.params),
        "created_at": utc_now(), "user": settings.user(), "host": socket.gethostname()[:256],
        **fields})


@dataclass
class _RunState:
    """What execute learns while the run goes on; _finish always gets it."""

    job_id: str | None = None
    previous: RunStatus = RunStatus.PENDING
    started: float = 0.0
    outcome: Outcome | None = None


def execute(record: RunRecord, res: Resolution, store: Store, executor: Executor,
            hooks: Hooks, previous: RunStatus = RunStatus.PENDING) -> RunRecord:
    """Run a recorded ``pending`` run to a terminal status. Never raises for a job's failure;
    the record is finished and saved whatever happens."""
    work = store.work_path(record.id)
    state = _RunState(previous=previous)
    live = LiveMetrics(res.resolved.metrics_from_log, work / "meta" / "metrics.jsonl",
                       hooks.on_metrics, hooks.on_points)
    sink = LogSink(store.log_path(record.id), res.redact_bytes, live.wrap(hooks.on_log))

    facts = _ImageFacts(executor, res, store, record.id)
    beside: Beside | None = None

    def started(job_id: str) -> None:  # the job exists: record it running (or abort)
        state.job_id = job_id
        facts.start()
        record.status, record.started_at = RunStatus.RUNNING, utc_now()
        store.runs.save(record, previous=state.previous)
        state.previous = RunStatus.RUNNING
        state.started = time.monotonic()
        hooks.on_line(f"run {record.id} started ({shown(res.resolved.image.digest)})")
        live.start()
        hooks.on_start(job_id)

    try:
        if res.archive_later and record.resolved.image.archive is None:
            beside = Beside(res.resolved.image.digest, store, cast(ImageBackend, executor))
            beside.start()
            hooks.on_line(f"archiving image {shown(res.resolved.image.digest)} into the "
                          "store while the job runs (first use of this image)")
        prepare_work(work, record, res)
        job = job_spec(record, res, work, write_secrets(record.id, res.secret_env),
                       store.home)
        with _signals_as_interrupts():
            state.outcome = executor.run(job, started, sink.write)
        classify(record, state.outcome, hooks)
    except (Interrupted, KeyboardInterrupt):  # before or after the job ran
        _interrupted(record, hooks)
    except ReproError as e:
        record.status = (RunStatus.FAILED if state.previous != RunStatus.RUNNING
                         else RunStatus.LOST)
        record.reason = res.redact(str(e))
    finally:
        live.stop()
        hooks.on_end()
        try:
            _finish(record, res, store, executor, state, sink, work, hooks, facts, beside)
        finally:
            remove_secrets(record.id)
    return record


class _ImageFacts:
    """The image's facts (OS, Python, packages, the lock checked), captured from outside
    while the job runs, in a throwaway container of the image (``capture.image_facts``):
    the job can rewrite what the boot script wrote in its own container. Once per image,
    lock and boot script on this machine (cached in local.db); an executor that holds no
    images (Kubernetes) leaves the job's report, labelled as such."""

    def __init__(self, executor: Executor, res: Resolution, store: Store, run_id: str) -> None:
        self.local = store.local
        self.facts: dict[str, Any] | None = None
        self.problem = ""
        self.thread: threading.Thread | None = None
        if not hasattr(executor, "image"):
            return
        image, lock = res.resolved.image.digest, res.lock_path
        self.key = capture.facts_key(image, lock)
        cached = self.local.image_facts(self.key)
        if cached is not None:  # what a capture said, or why it could not (no python3)
            doc = json.loads(cached)
            self.facts, self.problem = doc.get("facts"), doc.get("problem", "")
            return

        def capture_them() -> None:
            try:
                self.facts = capture.image_facts(executor, image, lock, str(store.home), run_id)
            except ReproError as e:
                self.problem = str(e)

        self.thread = threading.Thread(target=capture_them, name="image-facts", daemon=True)

    def start(self) -> None:
        if self.thread is not None and not self.thread.is_alive() and self.facts is None:
            self.thread.start()

    def result(self, warnings: list[str]) -> dict[str, Any] | None:
        if self.thread is not None and self.thread.ident is not None:
            self.thread.join(timeout=180)
            if self.thread.is_alive():
                self.problem = "the image's facts were not captured within 180 s"
            else:
                self.local.remember_image_facts(self.key, json.dumps(
                    {"facts": self.facts} if self.facts is not None else
                    {"problem": self.problem}))
            self.thread = None
        if self.facts is None and self.problem:
            warnings.append(f"{self.problem}; the container facts recorded are the job's "
                            "own report")
        return self.facts


def prepare_work(work: Path, record: RunRecord, res: Resolution) -> None:
    """The run's folders here: its metadata, and its working folder (a writable copy of the
    code snapshot, or an empty outputs folder for a run recorded before that layout)."""
    r = res.resolved
    try:
        work.mkdir(mode=0o700)  # the job's folders are reached through it by this user only
        meta = work / "meta"
        meta.mkdir()
        os.chmod(meta, 0o777)  # the container runs as nobody
        if r.layout == workdir.PROJECT:
            mounts = {i.mount: i.kind == "dir" for i in r.inputs.values() if i.mount}
            workdir.lay_out(work, res.snapshot.extracted, mounts, res.placed)
        else:
            (work / "outputs").mkdir()
            os.chmod(work / "outputs", 0o777)
        (work / "run.json").write_text(json.dumps(run_info(record, res)))
        (work / MACHINE_ID).write_text(machine_id(r.seed) + "\n")
    except OSError as e:
        raise ReproError(f"preparing the run's working folder {work}: {e.strerror or e}; "
                         "free space under REPRO_HOME and launch again") from e


def classify(record: RunRecord, outcome: Outcome, hooks: Hooks) -> None:
    """The status an outcome gives (a lock mismatch is named once ingest read the facts)."""
    record.environment.host = HostFacts.model_validate(outcome.host)
    if outcome.interrupted:
        _interrupted(record, hooks)
    elif outcome.lost is not None:
        record.status, record.reason = RunStatus.LOST, outcome.lost
    elif outcome.timed_out:
        record.status = RunStatus.TIMEOUT
        limit = record.resolved.timeout_s
        record.reason = f"timed out after {limit:g} s; stopped" if limit else "timed out; stopped"
    elif outcome.oom_killed:
        record.exit_code = outcome.code
        record.status, record.reason = RunStatus.FAILED, "oom-killed: the job exceeded " + (
            outcome.oom_limit or f"resources.memory ({record.resolved.resources.memory})")
    elif outcome.code == 0:
        record.exit_code, record.status = 0, RunStatus.SUCCEEDED
    else:
        record.exit_code = outcome.code
        record.status = RunStatus.FAILED
        record.reason = f"the job exited with code {outcome.code}"
    if hooks.cancel is not None and hooks.cancel.is_set() and record.status != RunStatus.LOST:
        record.status = RunStatus.INTERRUPTED
        record.reason = ("interrupted with the runs started beside it (a sweep, a diagnosis); "
                         "container stopped, partial outputs")


def _interrupted(record: RunRecord, hooks: Hooks) -> None:
    record.status = RunStatus.INTERRUPTED
    record.reason = "interrupted (Ctrl-C or SIGTERM); container stopped, partial outputs"
    hooks.on_line(f"interrupted: stopping run {record.id}")


def _finish(record: RunRecord, res: Resolution, store: Store, executor: Executor,
            state: _RunState, sink: LogSink, work: Path, hooks: Hooks,
            facts: _ImageFacts, beside: Beside | None = None) -> None:
    """Always runs: ingest what the run left, finish the record, clean up the job."""
    sink.close()
    record.warnings += sink.problems
    if state.started:
        record.duration_s = round(time.monotonic() - state.started, 3)
    record.finished_at = utc_now()
    if state.outcome is not None:
        record.stderr_tail = res.redact(state.outcome.stderr_tail)[-4000:]
    cleaner = None
    if state.job_id:
        job_id = state.job_id
        # the executor removes the job while we ingest outputs (a container: ~50 ms)
        cleaner = threading.Thread(target=_quietly, args=(lambda: executor.cleanup(job_id),))
        cleaner.start()
    series: list[tuple[str, int, float]] = []
    try:
        series = ingest(record, store, work, sink.path, res.redactor,
                        facts.result(record.warnings) if state.job_id else None)
    except Exception as e:  # whatever a job left, the run must end recorded
        if record.status == RunStatus.SUCCEEDED:
            record.status = RunStatus.FAILED
        why = str(e) if isinstance(e, ReproError | OSError) else f"{type(e).__name__}: {e}"
        record.reason = f"{record.reason + '; ' if record.reason else ''}storing outputs: {why}"
    if record.status == RunStatus.INTERRUPTED and record.outputs:
        record.warnings.append("outputs are partial: the run was interrupted")
    if not record.status.terminal:  # an unexpected exception is on its way up
        record.status = (RunStatus.FAILED if state.previous != RunStatus.RUNNING
                         else RunStatus.LOST)
        record.reason = record.reason or "repro stopped unexpectedly; see --debug output"
    # what the job left is in the store now (or could not be): free its space before the
    # final write, which may need it (a full disk)
    shutil.rmtree(work, ignore_errors=True)
    if record.logs is not None:
        sink.path.unlink(missing_ok=True)
    if beside is not None:  # the record is final once the image's archive is whole
        _archived(record, beside, store, hooks)
    try:
        hooks.on_finished(record, series)
    except Exception as e:  # whatever the caller's addition does, the run ends recorded
        why = str(e) if isinstance(e, ReproError | OSError) else f"{type(e).__name__}: {e}"
        record.warnings.append(f"finishing the record: {why}")
    try:
        store.runs.save(record, previous=state.previous, steps=series)  # together
        store.local.release(record.id)
        _keep(record, store, executor, hooks)
    finally:
        if cleaner is not None:
            cleaner.join()
    hooks.on_line(f"run {record.id} {record.status}" + (f": {record.reason}"
                                                        if record.reason else ""))


def _archived(record: RunRecord, beside: Beside, store: Store, hooks: Hooks) -> None:
    """The record takes the image's archive once it is whole (an interrupted run's is
    stopped); a run whose archive failed says so, and the next launch of the image tries
    again."""
    sha = beside.finish(store, hooks.on_line, stop=record.status == RunStatus.INTERRUPTED)
    image = record.resolved.image
    if sha is not None:
        record.resolved.image = image.model_copy(update={"archive": sha})
    else:
        record.warnings.append(
            f"image {shown(image.digest)} was not archived into the store ({beside.problem}); "
            "until a later launch of it archives it, a replay needs it in this engine")


def _keep(record: RunRecord, store: Store, executor: Executor, hooks: Hooks) -> None:
    """A registry-backed artifact store tags what the run needs with its id and receives
    the run's image by digest (once per image), so a replay anywhere can pull it."""
    if not store.artifacts.remote:
        return
    from .fsck import keep
    from .sync import image_pusher

    try:
        keep(record, store)
    except ReproError as e:
        hooks.on_line(f"warning: run {record.id}: its artifacts were stored, but the "
                      f"registry did not take its manifest ({e})")
    if hasattr(executor, "push") and hasattr(executor, "image"):  # an engine that holds
        # images (a fake executor in unit tests does not)
        try:
            image_pusher(lambda: executor)(record, store, hooks.on_line)
        except ReproError as e:
            hooks.on_line(f"warning: run {record.id}: image not pushed ({e})")


@contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM stops runs in worker threads (a sweep's points, a diagnosis's replays) the way
    Ctrl-C does: the runner's own signal handling cannot be installed in those threads."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` in the main thread while a run is live (the
    executor stops the job and reports it interrupted)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _quietly(fn: Callable[[], object], default: object = None) -> object:
    try:
        return fn()
    except ReproError:
        return default
