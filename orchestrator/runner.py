"""The run lifecycle: pending -> running -> succeeded | failed | interrupted | timeout | lost.

``launch`` resolves a spec, records the run as ``pending`` (failing to record aborts before any
container exists), then ``execute`` owns every transition inside one try/except/finally: the
container is always removed, outputs and logs are always ingested, the record is always
finished. A job failing is data, not an exception.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import capture, gpu, settings
from .engine import (
    LABEL_RUN,
    LABEL_STORE,
    LABEL_SWEEP,
    ContainerConfig,
    Engine,
    Mount,
    WaitTimeout,
)
from .errors import ReproError
from .hashing import shown
from .outputs import collect, final_metrics, read_logged_params, read_series
from .record import FileRef, RunRecord, RunStatus, utc_now
from .resolve import Redactor, Resolution, resolve
from .runtime import RUNTIME_DIR
from .runtime.repro_boot import LOCK_MISMATCH
from .spec import LoadedSpec
from .store import Store

CONTAINER_USER = "65534:65534"  # nobody:nogroup; never root


class Interrupted(BaseException):
    """SIGTERM/SIGINT arrived while a run was in flight."""


@dataclass
class Hooks:
    on_line: Callable[[str], None] = lambda _: None  # progress for people (stderr)
    on_log: Callable[[bytes], None] = lambda _: None  # the job's own output, live
    cancel: threading.Event | None = None  # set by a sweep's Ctrl-C: the run was stopped


def new_run_id() -> str:
    """16 random hex digits: short unique prefixes, like git. Order comes from created_at."""
    return secrets.token_hex(8)


def launch(loaded: LoadedSpec, store: Store, engine: Engine, *, allow_dirty: bool = False,
           strict: bool = False, hooks: Hooks | None = None,
           sweep_id: str | None = None) -> RunRecord:
    hooks = hooks or Hooks()
    requirement = loaded.spec.resources.gpu_requirement
    inventory, why_none = gpu.inventory() if requirement else ([], None)
    assigned = gpu.select(requirement.model_dump() if requirement else None, inventory,
                          why_none)
    res = resolve(loaded, store, engine, allow_dirty=allow_dirty, strict=strict,
                  on_line=hooks.on_line)
    for w in res.warnings:
        hooks.on_line(f"warning: {w}")
    record = RunRecord(
        id=new_run_id(), name=loaded.spec.name,
        spec=loaded.spec.model_dump(mode="json"), spec_path=str(loaded.path.resolve()),
        spec_digest=res.spec_digest, resolved=res.resolved, hermetic=res.resolved.network ==
        "none", params=dict(res.resolved.params), created_at=utc_now(),
        warnings=list(res.warnings), sweep_id=sweep_id)
    store.runs.insert(record)
    return execute(record, res, store, engine, hooks, inventory if requirement else None,
                   assigned)


@dataclass
class _Live:
    """What execute learns while the run goes on; _finish always gets it."""

    cid: str | None = None
    previous: RunStatus = RunStatus.PENDING
    started: float = 0.0
    follower: threading.Thread | None = None
    log_problems: list[str] = field(default_factory=list)


def execute(record: RunRecord, res: Resolution, store: Store, engine: Engine, hooks: Hooks,
            inventory: list[gpu.GPU] | None = None,
            assigned: list[gpu.GPU] | None = None,
            host: dict | None = None) -> RunRecord:
    """Run a recorded ``pending`` run to a terminal status. Never raises for a job's failure;
    the record is finished and saved whatever happens."""
    work = store.work_path(record.id)
    for d in (work / "outputs", work / "meta"):
        d.mkdir(parents=True)
        os.chmod(d, 0o777)  # the container runs as nobody
    (work / "run.json").write_text(json.dumps(_run_info(record, res)))
    log_path = store.log_path(record.id)
    live = _Live()
    try:
        cfg = _container_config(record, res, work, store, assigned or [],
                                write_secrets(record.id, res.secret_env))
        with _signals_as_interrupts():
            if host is None:
                if inventory is None:
                    inventory = gpu.inventory()[0]
                host = capture.host_facts(engine, inventory, assigned or [])
            record.environment["host"] = host
            _run_container(record, res, store, engine, hooks, cfg, log_path, work / "meta", live)
    except (Interrupted, KeyboardInterrupt):
        if live.cid:
            _quietly(lambda: engine.stop(live.cid, grace=settings.stop_grace()))
        record.status = RunStatus.INTERRUPTED
        record.reason = "interrupted (Ctrl-C or SIGTERM); container stopped, partial outputs"
        hooks.on_line(f"interrupted: stopping run {record.id}")
    except ReproError as e:
        record.status = (RunStatus.FAILED if live.previous == RunStatus.PENDING
                         else RunStatus.LOST)
        record.reason = res.redact(str(e))
    finally:
        try:
            _finish(record, res, store, engine, live, log_path, work, hooks)
        finally:
            remove_secrets(record.id)
    return record


def _run_container(record: RunRecord, res: Resolution, store: Store, engine: Engine,
                   hooks: Hooks, cfg: ContainerConfig, log_path: Path, meta_dir: Path,
                   live: _Live) -> None:
    live.cid = cid = engine.create(cfg)
    record.status, record.started_at = RunStatus.RUNNING, utc_now()
    store.runs.save(record, previous=live.previous)
    live.previous = RunStatus.RUNNING
    live.started = time.monotonic()
    engine.start(cid)
    hooks.on_line(f"run {record.id} started ({shown(res.resolved.image.digest)})")
    live.follower, live.log_problems = _follow_logs(engine, cid, log_path, hooks.on_log,
                                                    res.redact_bytes)
    try:
        exit_ = engine.wait(cid, timeout=res.resolved.timeout_s)
    except WaitTimeout:
        engine.stop(cid, grace=min(settings.stop_grace(), 5))
        record.status = RunStatus.TIMEOUT
        record.reason = f"timed out after {res.resolved.timeout_s:g} s; stopped"
    else:
        record.exit_code = exit_.code
        _classify(record, exit_.code, exit_.oom_killed)
        if hooks.cancel is not None and hooks.cancel.is_set():
            record.status = RunStatus.INTERRUPTED
            record.reason = "interrupted with its sweep; container stopped, partial outputs"


def _classify(record: RunRecord, code: int, oom: bool) -> None:
    """The status an exit gives (a lock mismatch is named once ingest read the facts)."""
    if oom:
        record.status, record.reason = RunStatus.FAILED, "oom-killed: the job exceeded " \
            f"resources.memory ({record.resolved.resources.memory})"
    elif code == 0:
        record.status = RunStatus.SUCCEEDED
    else:
        record.status, record.reason = RunStatus.FAILED, f"the job exited with code {code}"


def _finish(record: RunRecord, res: Resolution, store: Store, engine: Engine, live: _Live,
            log_path: Path, work: Path, hooks: Hooks) -> None:
    """Always runs: ingest what the run left, finish the record, remove the container."""
    if live.follower is not None:
        live.follower.join(timeout=10)
    record.warnings += live.log_problems
    if live.started:
        record.duration_s = round(time.monotonic() - live.started, 3)
    record.finished_at = utc_now()
    remover = None
    if live.cid:
        cid = live.cid
        tail = _quietly(lambda: engine.stderr_tail(cid), default="")
        record.stderr_tail = res.redact(str(tail))[-4000:]
        # the engine removes the container while we ingest outputs (it takes ~50 ms)
        remover = threading.Thread(target=_quietly, args=(lambda: engine.remove(cid),))
        remover.start()
    series: list[tuple[str, int, float]] = []
    try:
        series = ingest(record, store, work, log_path, res.redactor)
    except Exception as e:  # whatever a job left, the run must end recorded
        if record.status == RunStatus.SUCCEEDED:
            record.status = RunStatus.FAILED
        why = str(e) if isinstance(e, ReproError | OSError) else f"{type(e).__name__}: {e}"
        record.reason = f"{record.reason + '; ' if record.reason else ''}storing outputs: {why}"
    if record.status == RunStatus.INTERRUPTED and record.outputs:
        record.warnings.append("outputs are partial: the run was interrupted")
    if not record.status.terminal:  # an unexpected exception is on its way up
        record.status = (RunStatus.FAILED if live.previous == RunStatus.PENDING
                         else RunStatus.LOST)
        record.reason = record.reason or "repro stopped unexpectedly; see --debug output"
    # what the job left is in the store now (or could not be): free its space before the
    # final write, which may need it (a full disk)
    shutil.rmtree(work, ignore_errors=True)
    if record.logs is not None:
        log_path.unlink(missing_ok=True)
    try:
        if series:
            store.runs.add_steps(record.id, series)
        store.runs.save(record, previous=live.previous)
    finally:
        if remover is not None:
            remover.join()
    hooks.on_line(f"run {record.id} {record.status}" + (f": {record.reason}"
                                                        if record.reason else ""))


def ingest(record: RunRecord, store: Store, work: Path, log_path: Path,
           redactor: Redactor | None = None) -> list[tuple[str, int, float]]:
    """What a run left (outputs, environment, metrics, logged params, the live log) into its
    record and the artifact store. Returns the metric series, for the caller to store with
    the record. Used when a run ends and when recovery finishes an orphan. Secret values in
    names and logged params are redacted (``redactor``)."""
    meta_dir, outputs_dir = work / "meta", work / "outputs"
    facts = capture.container_facts(meta_dir, record.warnings)
    record.environment["container"] = facts
    if record.exit_code == LOCK_MISMATCH and facts["lock_problems"] and \
            record.status == RunStatus.FAILED:
        record.reason = "package lock mismatch: " + "; ".join(facts["lock_problems"])
    series = read_series(meta_dir, record.warnings)
    record.params = {**read_logged_params(meta_dir, record.resolved.params, record.warnings),
                     **record.resolved.params}
    record.metrics = final_metrics(series, outputs_dir, record.warnings)
    found = collect(outputs_dir, record.resolved.outputs, store.artifacts)
    record.outputs, record.skipped_outputs = found.stored, found.skipped
    record.warnings += found.warnings
    if found.problems:
        if record.status == RunStatus.SUCCEEDED:
            record.status, record.reason = RunStatus.FAILED, found.problems[0]
        else:
            record.warnings += found.problems[:1]
    if log_path.exists():
        sha, size = store.artifacts.put_file(log_path)
        record.logs = FileRef(sha256=sha, size=size)
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


def _container_config(record: RunRecord, res: Resolution, work: Path, store: Store,
                      assigned: list[gpu.GPU], secret_files: dict[str, Path]) -> ContainerConfig:
    r = res.resolved
    mounts = [Mount(str(res.snapshot.extracted), "/repro/code"),
              Mount(str(RUNTIME_DIR), "/repro/lib"),
              Mount(str(work / "run.json"), "/repro/run.json"),
              Mount(str(work / "outputs"), "/repro/outputs", read_only=False),
              Mount(str(work / "meta"), "/repro/meta", read_only=False)]
    mounts += [Mount(str(src), f"/repro/inputs/{name}") for name, src in
               res.input_sources.items()]
    if res.lock_path is not None:
        mounts.append(Mount(str(res.lock_path), "/repro/lock.txt"))
    mounts += [Mount(str(path), f"/run/secrets/{name}") for name, path in secret_files.items()]
    as_env = r.secrets if r.secret_env is None else r.secret_env  # None: an older record
    env = {**r.env, "REPRO_RUN_ID": record.id,
           **{n: v for n, v in res.secret_env.items() if n in as_env}}
    return ContainerConfig(
        image=r.image.digest, command=["/bin/sh", "/repro/lib/boot.sh", *r.command], env=env,
        mounts=mounts, user=CONTAINER_USER, workdir="/repro/outputs",
        nano_cpus=int(r.resources.cpus * 1e9), memory_bytes=r.resources.memory_bytes,
        network=r.network, labels={LABEL_RUN: record.id, LABEL_STORE: str(store.home),
                                   **({LABEL_SWEEP: record.sweep_id} if record.sweep_id else {})},
        gpu_ids=[g.uuid for g in assigned],
        # a tmpfs is charged to the container's memory, so /tmp can never fill the disk
        tmp_bytes=settings.tmp_size(r.resources.memory_bytes))


def _run_info(record: RunRecord, res: Resolution) -> dict:
    r = res.resolved
    return {"id": record.id, "name": record.name, "params": r.params, "seed": r.seed,
            "inputs": {n: f"/repro/inputs/{n}" for n in r.inputs}, "outputs": "/repro/outputs",
            "command": r.command}


def _follow_logs(engine: Engine, cid: str, log_path: Path, on_log: Callable[[bytes], None],
                 redact: Callable[[bytes], bytes]) -> tuple[threading.Thread, list[str]]:
    """Stream the job's output into the store's log file (and to the screen) as it comes,
    whole lines at a time so a secret value split across chunks is still redacted."""
    log_path.parent.mkdir(parents=True, exist_ok=True)

    failed: list[str] = []

    def emit(f: BinaryIO | None, data: bytes) -> None:
        data = redact(data)
        if f is not None and not failed:
            try:
                f.write(data)
                f.flush()
            except OSError as e:  # a full disk must not kill the run: keep showing the output
                failed.append(f"logs are incomplete: {e.strerror}")
        on_log(data)

    def follow() -> None:
        carry = b""
        try:
            f: BinaryIO | None = open(log_path, "ab")
        except OSError as e:
            f = None
            failed.append(f"logs were not stored: {e.strerror}")
        try:
            for chunk in engine.logs(cid):
                carry += chunk
                cut = carry.rfind(b"\n") + 1
                if cut == 0 and len(carry) < 65536:
                    continue
                cut = cut or len(carry)
                emit(f, carry[:cut])
                carry = carry[cut:]
        except ReproError:
            pass  # the wait in the main thread reports a lost engine
        finally:
            if carry:
                emit(f, carry)
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

    t = threading.Thread(target=follow, name=f"logs-{cid[:12]}", daemon=True)
    t.start()
    return t, failed


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` in the main thread while a run is live."""
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
