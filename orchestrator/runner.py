"""The run lifecycle: pending -> running -> succeeded | failed | interrupted | timeout | lost.

``launch`` resolves a spec, records the run as ``pending`` (failing to record aborts before any
job exists), then ``execute`` owns every transition: an executor (``engine/``) runs the job and
says how it ended, and this module turns that into a status, a record and stored outputs.
The job is always cleaned up, outputs and logs always ingested, the record always finished.
A job failing is data, not an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import capture, settings, workdir
from .engine import (
    CONTAINER_HOSTNAME,
    LABEL_RUN,
    LABEL_STORE,
    LABEL_SWEEP,
    Engine,
    Executor,
    Interrupted,
    JobSpec,
    Outcome,
    Volume,
)
from .errors import ReproError
from .hashing import shown
from .live import Latest, LiveMetrics
from .outputs import collect, final_metrics, read_logged_params, read_series, scrape_metrics
from .record import FileRef, RunRecord, RunStatus, utc_now
from .resolve import Redactor, Resolution, resolve, trace
from .runtime import RUNTIME_DIR, VENDOR_PACKAGING
from .runtime.repro_boot import LOCK_MISMATCH
from .spec import LoadedSpec, param_env
from .store import Store

CONTAINER_USER = "65534:65534"  # nobody:nogroup; never root


@dataclass
class Hooks:
    on_line: Callable[[str], None] = lambda _: None  # progress for people (stderr)
    on_log: Callable[[bytes], None] = lambda _: None  # the job's own output, live
    on_metrics: Callable[[Latest], None] = lambda _: None  # its latest metrics, live
    on_end: Callable[[], None] = lambda: None  # the job ended: the live line goes
    cancel: threading.Event | None = None  # set by a sweep's Ctrl-C: the run was stopped
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
                                 strict=strict, hooks=hooks, sweep_id=sweep_id)
    return start(record, res, store, engine, hooks)


def prepare_launch(loaded: LoadedSpec, store: Store, engine: Engine, *,
                   allow_dirty: bool = False, strict: bool = False, hooks: Hooks,
                   sweep_id: str | None = None,
                   local_gpus: bool = True) -> tuple[RunRecord, Resolution]:
    """Resolve ``loaded`` (its code, inputs and lock into the store) into a new record, not
    yet stored. ``local_gpus``: the GPUs must be on this machine (not for a scheduler's
    node)."""
    requirement = loaded.spec.resources.gpu_requirement
    chosen = None
    if requirement is not None and local_gpus:  # no GPUs to be had: say so before anything
        chosen = engine.host(requirement.model_dump())[1]  # is resolved
    res = resolve(loaded, store, engine, allow_dirty=allow_dirty, strict=strict,
                  on_line=hooks.on_line)
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
                       hooks.on_metrics)
    sink = LogSink(store.log_path(record.id), res.redact_bytes, live.wrap(hooks.on_log))

    facts = _ImageFacts(executor, res, store, record.id)

    def started(job_id: str) -> None:  # the job exists: record it running (or abort)
        state.job_id = job_id
        facts.start()
        record.status, record.started_at = RunStatus.RUNNING, utc_now()
        store.runs.save(record, previous=state.previous)
        state.previous = RunStatus.RUNNING
        state.started = time.monotonic()
        hooks.on_line(f"run {record.id} started ({shown(res.resolved.image.digest)})")
        live.start()

    try:
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
            _finish(record, res, store, executor, state, sink, work, hooks, facts)
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
            workdir.lay_out(work, res.snapshot.extracted, mounts)
        else:
            (work / "outputs").mkdir()
            os.chmod(work / "outputs", 0o777)
        (work / "run.json").write_text(json.dumps(_run_info(record, res)))
        (work / MACHINE_ID).write_text(machine_id(r.seed) + "\n")
    except OSError as e:
        raise ReproError(f"preparing the run's working folder {work}: {e.strerror or e}; "
                         "free space under REPRO_HOME and launch again") from e


def classify(record: RunRecord, outcome: Outcome, hooks: Hooks) -> None:
    """The status an outcome gives (a lock mismatch is named once ingest read the facts)."""
    record.environment["host"] = outcome.host
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
        record.status, record.reason = RunStatus.FAILED, "oom-killed: the job exceeded " \
            f"resources.memory ({record.resolved.resources.memory})"
    elif outcome.code == 0:
        record.exit_code, record.status = 0, RunStatus.SUCCEEDED
    else:
        record.exit_code = outcome.code
        record.status = RunStatus.FAILED
        record.reason = f"the job exited with code {outcome.code}"
    if hooks.cancel is not None and hooks.cancel.is_set() and record.status != RunStatus.LOST:
        record.status = RunStatus.INTERRUPTED
        record.reason = "interrupted with its sweep; container stopped, partial outputs"


def _interrupted(record: RunRecord, hooks: Hooks) -> None:
    record.status = RunStatus.INTERRUPTED
    record.reason = "interrupted (Ctrl-C or SIGTERM); container stopped, partial outputs"
    hooks.on_line(f"interrupted: stopping run {record.id}")


def _finish(record: RunRecord, res: Resolution, store: Store, executor: Executor,
            state: _RunState, sink: LogSink, work: Path, hooks: Hooks,
            facts: _ImageFacts) -> None:
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


def _keep(record: RunRecord, store: Store, executor: Executor, hooks: Hooks) -> None:
    """A registry-backed artifact store tags what the run needs with its id and receives
    the run's image by digest (once per image), so a replay anywhere can pull it."""
    from .fsck import keep
    from .sync import image_pusher

    if not store.artifacts.remote:
        return
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


def ingest(record: RunRecord, store: Store, work: Path, log_path: Path,
           redactor: Redactor | None = None,
           image_facts: dict[str, Any] | None = None) -> list[tuple[str, int, float]]:
    """What a run left (outputs, environment, metrics, logged params, the live log) into its
    record and the artifact store. Returns the metric series, for the caller to store with
    the record. Used when a run ends and when recovery finishes an orphan. Secret values in
    names and logged params are redacted (``redactor``). ``image_facts``: the container's
    facts as repro captured them (else the job's own report is recorded, labelled so)."""
    r = record.resolved
    meta_dir, outputs_dir = work / "meta", workdir.folder(work, r.layout)
    facts = capture.container_facts(meta_dir, record.warnings, image_facts)
    facts["hostname"] = CONTAINER_HOSTNAME
    if (work / MACHINE_ID).exists():
        facts["machine_id"] = machine_id(r.seed)
    record.environment["container"] = facts
    if record.exit_code == LOCK_MISMATCH and facts["lock_problems"] and \
            record.status == RunStatus.FAILED:
        record.reason = "package lock mismatch: " + "; ".join(facts["lock_problems"])
    series = read_series(meta_dir, record.warnings)
    series += scrape_metrics(log_path, record.resolved.metrics_from_log, record.warnings)
    record.params = {**read_logged_params(meta_dir, record.resolved.params, record.warnings),
                     **record.resolved.params}
    untouched = workdir.Untouched(work) if r.layout == workdir.PROJECT else None
    found = collect(outputs_dir, r.outputs, store.artifacts, exclude=r.outputs_exclude,
                    untouched=untouched, ignore=[i.mount for i in r.inputs.values() if i.mount])
    record.metrics = final_metrics(series, outputs_dir / "metrics.json"
                                   if "metrics.json" in found.stored else None, record.warnings)
    record.outputs, record.skipped_outputs = found.stored, found.skipped
    record.warnings += found.warnings
    if found.problems:
        if record.status == RunStatus.SUCCEEDED:
            record.status, record.reason = RunStatus.FAILED, found.problems[0]
        else:
            record.warnings += found.problems[:1]
    if log_path.exists():
        put = store.artifacts.put(log_path, name="logs")
        record.logs = FileRef(sha256=put.sha256, size=put.size)
    if redactor is not None and redactor.needles:
        series = _redact_names(record, series, redactor)
    return series


def _redact_names(record: RunRecord, series: list[tuple[str, int, float]],
                  redactor: Redactor) -> list[tuple[str, int, float]]:
    """Secret values out of everything a job named: metrics, logged params, output files."""
    r = redactor.redact

    def keys(d: dict) -> dict:
        return {r(k): v for k, v in d.items()}

    before = (list(record.metrics), list(record.params), list(record.outputs))
    record.metrics, record.outputs = keys(record.metrics), keys(record.outputs)
    record.skipped_outputs = {r(k): v for k, v in record.skipped_outputs.items()}
    record.params = {r(k): r(v) if isinstance(v, str) else v for k, v in record.params.items()}
    if before != (list(record.metrics), list(record.params), list(record.outputs)) or any(
            r(str(v)) != str(v) for v in record.params.values()):
        record.warnings.append("the job put a secret's value in a name or logged param; "
                               "it was redacted")
    return [(r(n), s, v) for n, s, v in series]


SECRETS_ROOT = Path("/dev/shm")  # a tmpfs: secret values never touch a disk


def _secrets_dir(run_id: str) -> Path:
    root = SECRETS_ROOT if SECRETS_ROOT.is_dir() else Path(tempfile.gettempdir())
    return root / f"repro-secrets-{os.getuid()}" / run_id


def write_secrets(run_id: str, values: dict[str, str]) -> dict[str, Path]:
    """Each secret as a file in a private folder on a tmpfs (mounted into the container at
    /run/secrets/NAME, so `docker inspect` shows a path, never the value)."""
    if not values:
        return {}
    folder = _secrets_dir(run_id)
    try:
        folder.parent.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked next: it must be ours
    st = folder.parent.lstat()  # someone else's folder (or a link) there would see them
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ReproError(f"{folder.parent} is not a folder of this user; remove it and "
                         "launch again (secret values go there)")
    os.chmod(folder.parent, 0o700)  # only this user reaches the files; the engine mounts them
    folder.mkdir(mode=0o700, exist_ok=True)
    files = {}
    for name, value in values.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.chmod(path, 0o444)  # the job runs as another user (nobody)
        files[name] = path
    return files


def remove_secrets(run_id: str) -> None:
    shutil.rmtree(_secrets_dir(run_id), ignore_errors=True)


MACHINE_ID = "machine-id"  # in the run's folder, the job's /etc/machine-id


def machine_id(seed: int) -> str:
    """The job's /etc/machine-id: the same for every run of a seed (a replay's too), so a
    job that names or seeds things by the machine agrees with its replays."""
    return hashlib.sha256(f"repro machine-id {seed}".encode()).hexdigest()[:32]


def job_spec(record: RunRecord, res: Resolution, work: Path, secret_files: dict[str, Path],
             store_home: Path) -> JobSpec:
    """The backend-neutral job for a run: its volumes, environment, limits and labels."""
    r = res.resolved
    here = workdir.folder(work, r.layout)
    if r.layout == workdir.PROJECT:  # one writable folder, by both names
        volumes = [Volume("code", here, workdir.CODE, writable=True),
                   Volume("outputs", here, "/repro/outputs", writable=True)]
    else:
        volumes = [Volume("code", res.snapshot.extracted, workdir.CODE),
                   Volume("outputs", here, "/repro/outputs", writable=True)]
    volumes += [Volume("lib", RUNTIME_DIR, "/repro/lib"),
                Volume("run", work / "run.json", "/repro/run.json"),
                Volume("meta", work / "meta", "/repro/meta", writable=True)]
    if (work / MACHINE_ID).exists():  # absent for a run prepared before it was fixed
        volumes.append(Volume("machine-id", work / MACHINE_ID, "/etc/machine-id"))
    volumes += [Volume(f"input:{name}", src, f"/repro/inputs/{name}")
                for name, src in res.input_sources.items()]
    volumes += [Volume(f"mount:{name}", src, f"{workdir.CODE}/{r.inputs[name].mount}")
                for name, src in res.input_sources.items() if r.inputs[name].mount]
    if res.lock_path is not None:
        volumes.append(Volume("lock", res.lock_path, "/repro/lock.txt"))
        volumes.append(Volume("vendor", VENDOR_PACKAGING, "/repro/vendor/packaging"))
    volumes += [Volume(f"secret:{name}", path, f"/run/secrets/{name}")
                for name, path in secret_files.items()]
    as_env = r.secrets if r.secret_env is None else r.secret_env  # None: an older record
    env = {**r.env, **param_env(r.params), "REPRO_RUN_ID": record.id,
           **{n: v for n, v in res.secret_env.items() if n in as_env}}
    labels = {LABEL_RUN: record.id, LABEL_STORE: str(store_home)}
    if record.sweep_id:
        labels[LABEL_SWEEP] = record.sweep_id
    return JobSpec(
        run_id=record.id, image=r.image.digest,
        command=["/bin/sh", "/repro/lib/boot.sh", *r.command], env=env, volumes=volumes,
        user=CONTAINER_USER, workdir=workdir.target(r.layout), cpus=r.resources.cpus,
        memory_bytes=r.resources.memory_bytes, gpus=r.resources.gpus, network=r.network,
        timeout_s=r.timeout_s, labels=labels, stop_grace_s=settings.stop_grace(),
        # a tmpfs is charged to the container's memory, so /tmp can never fill the disk
        tmp_bytes=settings.tmp_size(r.resources.memory_bytes))


def _run_info(record: RunRecord, res: Resolution) -> dict:
    r = res.resolved
    return {"id": record.id, "name": record.name, "params": r.params, "seed": r.seed,
            "inputs": {n: f"/repro/inputs/{n}" for n in r.inputs}, "outputs": "/repro/outputs",
            "workdir": workdir.target(r.layout), "command": r.command}


class LogSink:
    """The job's output as it comes: into the store's log file and to the screen, whole
    lines at a time so a secret value split across chunks is still redacted. A full disk
    must not kill the run: the output keeps showing, and the record says the log is short."""

    def __init__(self, path: Path, redact: Callable[[bytes], bytes],
                 on_log: Callable[[bytes], None]) -> None:
        self.path, self.redact, self.on_log = path, redact, on_log
        self.problems: list[str] = []
        self.carry = b""
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO | None
        try:
            self.file = open(path, "ab")
        except OSError as e:
            self.file = None
            self.problems.append(f"logs were not stored: {e.strerror}")

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.carry += chunk
            cut = self.carry.rfind(b"\n") + 1
            if cut == 0 and len(self.carry) < 65536:
                return
            cut = cut or len(self.carry)
            self._emit(self.carry[:cut])
            self.carry = self.carry[cut:]

    def close(self) -> None:
        with self.lock:
            if self.carry:
                self._emit(self.carry)
                self.carry = b""
            if self.file is not None:
                try:
                    self.file.close()
                except OSError:
                    pass
                self.file = None

    def _emit(self, data: bytes) -> None:
        data = self.redact(data)
        if self.file is not None and not self.problems:
            try:
                self.file.write(data)
                self.file.flush()
            except OSError as e:
                self.problems.append(f"logs are incomplete: {e.strerror}")
        self.on_log(data)


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
