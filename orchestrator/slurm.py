"""Slurm: a run handed to the cluster's scheduler, recorded like any other.

Where a run goes is not what it is: the run is resolved here (code snapshot, inputs and lock
into the shared artifact store), recorded ``pending`` with ``executor`` set (never part of
``spec_digest``), and submitted as a job held by Slurm until its id is recorded ``queued``
(so the node never races the record). On the node, the job runs ``repro node-run RUN``,
which fetches what the record names from the shared stores and runs it with that node's
engine through the same ``runner.execute`` a local launch uses; the node records
``running`` and the ending itself. Slurm's own endings (a time limit, out of memory, a
cancel, a failed node) reach the record through :func:`reconcile`, from whoever follows the
run (`launch` without `--detach`, `repro wait`, `repro cancel`).

Every Slurm command is a subprocess (sbatch, scontrol, squeue, scancel): they are the
interface Slurm keeps stable (its REST API needs slurmrestd and JWT set up; its Python
bindings follow each release), and ``--parsable`` output is meant for programs.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ReproError, StoreError, UsageError
from .record import RunRecord, RunStatus, utc_now
from .store import Store
from .store.db import safe_url

if TYPE_CHECKING:
    from .engine import Engine
    from .runner import Hooks

RUNNER_MIB = 256  # --mem's allowance for repro on the node (peak < 50 MiB): docs/clusters.md
# Slurm's endings, and what each means for the run when the node did not record one itself
ENDINGS: dict[str, tuple[RunStatus, str]] = {
    "TIMEOUT": (RunStatus.TIMEOUT, "Slurm ended the job at its time limit (--time)"),
    "DEADLINE": (RunStatus.TIMEOUT, "Slurm ended the job at its deadline"),
    "OUT_OF_MEMORY": (RunStatus.FAILED, "oom-killed: Slurm ended the job out of memory "
                                        "(--mem)"),
    "CANCELLED": (RunStatus.INTERRUPTED, "cancelled in Slurm (scancel)"),
    "PREEMPTED": (RunStatus.INTERRUPTED, "preempted by Slurm"),
    "NODE_FAIL": (RunStatus.LOST, "the node running it failed (Slurm NODE_FAIL)"),
    "BOOT_FAIL": (RunStatus.LOST, "the node did not boot (Slurm BOOT_FAIL)"),
    "FAILED": (RunStatus.FAILED, "the Slurm job failed before repro could record why (see "
                                 "its output file)"),
    "COMPLETED": (RunStatus.LOST, "the Slurm job ended without recording the run (see its "
                                  "output file)"),
}
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "REQUEUE_HOLD",
          "REQUEUE_FED", "SPECIAL_EXIT", "STOPPED"}
TITLE = "Slurm"
SUBMITS = True  # the Scheduler protocol (scheduler.py): this module is its Slurm entry
JOB_ID = re.compile(r"^[0-9]{1,20}(_[0-9]{1,9})?$")  # 12 or, for an array task, 12_3
GRACE_S = 20.0  # after Slurm says a job ended, how long the node's own record may take


@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    extra: list[str] = field(default_factory=list)  # more sbatch options, as given

    def __post_init__(self) -> None:
        """Each value one printable line, each extra an option: a newline or a bare word
        would change the job sbatch submits (a word before the script becomes the script)."""
        named = [(f"--{k}", v) for k, v in (("partition", self.partition),
                                            ("account", self.account), ("qos", self.qos)) if v]
        for what, value in [*named, *(("--sbatch-option", e) for e in self.extra)]:
            if not value.isprintable() or not value.strip():
                raise UsageError(f"{what} {value[:80]!r}: give one printable line (no "
                                 "newline or control character)")
        bare = [e for e in self.extra if not e.startswith("-")]
        if bare:  # sbatch would take it for its script (an option's value: --name=value)
            raise UsageError(f"--sbatch-option {bare[0][:80]!r} is not an option: give each "
                             "as one word, --name=value (--constraint=gpu, not --constraint "
                             "gpu), also in REPRO_SLURM_OPTIONS")

    def doc(self) -> dict[str, Any]:
        return {"partition": self.partition, "account": self.account, "qos": self.qos,
                "sbatch_options": list(self.extra)}


def options(flags: dict[str, Any]) -> SlurmOptions:
    """--partition, --account, --qos, --sbatch-option, else REPRO_SLURM_* (the options
    REPRO_SLURM_OPTIONS names come first, the command's after)."""
    env = os.environ.get
    return SlurmOptions(
        partition=flags.get("partition") or env("REPRO_SLURM_PARTITION") or None,
        account=flags.get("account") or env("REPRO_SLURM_ACCOUNT") or None,
        qos=flags.get("qos") or env("REPRO_SLURM_QOS") or None,
        extra=shlex.split(env("REPRO_SLURM_OPTIONS", "")) + list(flags.get("extra") or []))


def render(record: RunRecord, store: Store, opts: SlurmOptions) -> tuple[str, Any]:
    """The job script sbatch would get (`--dry-run`): text, even with --json."""
    return script(record, opts, store.home), None


def require_shared_store() -> None:
    """A node must reach the records and the artifacts (not this machine's embedded store)."""
    if not all(os.environ.get(k, "").strip() for k in ("REPRO_STORE", "REPRO_ARTIFACTS")):
        raise UsageError("--executor slurm needs stores every node can reach: set "
                         "REPRO_STORE (postgresql://... or a path on a shared filesystem) and "
                         "REPRO_ARTIFACTS (file:///shared/path or oci://HOST/REPO)")


def sbatch_options(record: RunRecord, opts: SlurmOptions, out: Path) -> list[str]:
    """The run's resources as sbatch options (cpus, memory, GPUs, time) and the user's."""
    r = record.resolved
    res = r.resources
    args = [f"--job-name=repro-{record.name[:40]}-{record.id[:8]}",
            f"--cpus-per-task={max(1, math.ceil(res.cpus))}",
            f"--mem={max(1, math.ceil(res.memory_bytes / (1 << 20))) + RUNNER_MIB}M",
            f"--output={out}", "--open-mode=append"]
    if res.gpus:
        model = res.gpus.get("model")
        kind = f":{_gres_type(model)}" if model else ""
        args.append(f"--gres=gpu{kind}:{int(res.gpus.get('count', 1))}")
    if r.timeout_s:
        args.append(f"--time={math.ceil(r.timeout_s / 60) + 1}")  # a minute to fetch and set up
    for flag, value in (("partition", opts.partition), ("account", opts.account),
                        ("qos", opts.qos)):
        if value:
            args.append(f"--{flag}={value}")
    return args + list(opts.extra)


def _gres_type(model: str) -> str:
    """A GPU model as a gres type: Slurm's convention is lower case, no spaces (h100)."""
    return "".join(c for c in model.lower().replace("nvidia", "") if c.isalnum() or c == "_")


def script(record: RunRecord, opts: SlurmOptions, home: Path) -> str:
    """The job script (``--dry-run`` prints it). Store URLs come from the environment sbatch
    is given (``job_environment``), never written here."""
    out = home / "slurm" / f"{record.id}.out"
    python = os.environ.get("REPRO_SLURM_PYTHON", sys.executable)
    lines = ["#!/bin/sh", *[f"#SBATCH {shlex.quote(a)}" for a in
                            sbatch_options(record, opts, out)],
             f"# repro run {record.id} ({record.name}): fetched from the shared stores and run",
             "# by this node's engine; the node records its start and its end.",
             f"#   records:   {safe_url(os.environ.get('REPRO_STORE', ''))}",
             f"#   artifacts: {safe_url(os.environ.get('REPRO_ARTIFACTS', ''))}",
             f"export REPRO_HOME={shlex.quote(str(home))}",
             f"exec {shlex.quote(python)} -m orchestrator node-run {record.id}"]
    return "\n".join(lines) + "\n"


# what a node needs of the submitting environment, by name; nothing else reaches sbatch,
# which exports its whole environment into the job and slurmctld keeps it in its state
JOB_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
           "SLURM_CONF", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH",
           "DOCKER_TLS_VERIFY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
           "PGPASSFILE", "PGSERVICEFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY",
           "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGCONNECT_TIMEOUT")
SECRET_SETTINGS = ("REPRO_UI_TOKEN", "REPRO_TEAM_STORE", "REPRO_TEAM_ARTIFACTS")


def job_environment(records: list[RunRecord]) -> tuple[dict[str, str], list[str]]:
    """The environment sbatch is given (and exports into the job): the names in JOB_ENV,
    locale variables, repro's settings (the store URLs without their passwords), and the
    secrets the runs ask for, nothing else (no PGPASSWORD, no cloud keys, no proxy
    credentials). Returns it with the warnings to show: a password left out."""
    from .store.db import without_password

    env = {k: v for k, v in os.environ.items()
           if k in JOB_ENV or k.startswith("LC_") or
           (k.startswith("REPRO_") and k not in SECRET_SETTINGS)}
    notes = []
    for name in ("REPRO_STORE", "REPRO_ARTIFACTS"):
        if name in env:
            bare = without_password(env[name])
            if bare != env[name]:
                notes.append(f"{name}'s password is not given to Slurm (it keeps a job's "
                             "environment in its state): the node reads it from ~/.pgpass "
                             "(PGPASSFILE) or the registry's docker login")
            env[name] = bare
    if os.environ.get("PGPASSWORD"):
        notes.append("PGPASSWORD is not given to Slurm (it keeps a job's environment in its "
                     "state): put the store's password in ~/.pgpass on the shared home")
    for name in sorted({n for r in records for n in r.resolved.secrets}):
        if name in os.environ:  # what the run asks for: it needs them on the node
            env[name] = os.environ[name]
    return env, notes


def _slurm(*cmd: str, what: str, env: dict[str, str] | None = None) -> str:
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, env=env)
    except FileNotFoundError:
        raise UsageError(f"{cmd[0]} not found: --executor slurm needs the Slurm client "
                         "commands on this machine (Debian: slurm-client)") from None
    except subprocess.TimeoutExpired:
        raise ReproError(f"{what}: {cmd[0]} did not answer in 60 s (is slurmctld up?)") from None
    if p.returncode != 0:
        first = (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()
        raise ReproError(f"{what}: {first[0][:300]}")
    return p.stdout


def submit(record: RunRecord, store: Store, opts: SlurmOptions,
           on_line: Callable[[str], None]) -> RunRecord:
    """Record the run pending, submit it held, record it queued with its job id, release.
    A refusal by sbatch ends the run failed with Slurm's reason."""
    record.executor = {**(record.executor or {}), "kind": "slurm", **opts.doc()}
    store.local.note_launched(record.id)
    store.runs.insert(record)
    folder = store.home / "slurm"
    folder.mkdir(exist_ok=True)
    path = folder / f"{record.id}.sh"
    path.write_text(script(record, opts, store.home))
    try:
        env, notes = job_environment([record])
        for note in notes:
            on_line(f"note: {note}")
        job_id = _slurm("sbatch", "--parsable", "--hold", "--export=ALL", str(path),
                        what="sbatch", env=env).strip().split(";")[0]
    except ReproError as e:
        record.status, record.finished_at = RunStatus.FAILED, utc_now()
        record.reason = f"not submitted: {e}"
        store.runs.save(record, previous=RunStatus.PENDING)
        return record
    record.executor["job_id"] = job_id
    record.status = RunStatus.QUEUED
    store.runs.save(record, previous=RunStatus.PENDING)
    _slurm("scontrol", "release", job_id, what=f"release Slurm job {job_id}")
    on_line(f"run {record.id} queued as Slurm job {job_id}")
    return record


def job_fields(job_id: str) -> dict[str, str]:
    """What `scontrol show job` says of the job; {} when Slurm no longer knows it."""
    try:
        p = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if p.returncode != 0:
        return {}
    return dict(kv.split("=", 1) for kv in p.stdout.split() if "=" in kv)


def job_state(job_id: str) -> tuple[str, str]:
    """(Slurm's state, its reason); ("GONE", "") when Slurm no longer knows the job."""
    fields = job_fields(job_id)
    return fields.get("JobState", "GONE"), fields.get("Reason", "")


def seconds(text: str) -> float | None:
    """Slurm's durations ([D-]HH:MM:SS, MM:SS, UNLIMITED) in seconds; None when unlimited."""
    if not text or text in ("UNLIMITED", "INFINITE", "Partition_Limit", "NONE"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(x) for x in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts[-3:]
    return (float(days) if days else 0.0) * 86400 + h * 3600 + m * 60 + s


def stopped_why(job_id: str) -> tuple[RunStatus, str]:
    """Why Slurm is stopping the job this process belongs to (it got SIGTERM): while a job
    dies Slurm says only COMPLETING, so its run time against its limit tells a time limit
    from a cancel."""
    fields = job_fields(job_id)
    state = fields.get("JobState", "")
    if state in ENDINGS and state not in ("COMPLETED", "FAILED"):
        return ENDINGS[state]
    limit, ran = seconds(fields.get("TimeLimit", "")), seconds(fields.get("RunTime", ""))
    if limit is not None and ran is not None and ran >= limit - 1:
        return ENDINGS["TIMEOUT"]
    return RunStatus.INTERRUPTED, "stopped by Slurm (scancel, or preempted)"


def job_of(record: RunRecord) -> str | None:
    """The Slurm job id a record names, checked: a record comes from a shared store, and an
    id like ``--user=alice`` handed to scancel would cancel someone's every job."""
    job = (record.executor or {}).get("job_id")
    if job is None:
        return None
    if not isinstance(job, str) or not JOB_ID.match(job):
        raise UsageError(f"run {record.id} names Slurm job {str(job)[:40]!r}, which is not a "
                         "job id; it is not handed to Slurm")
    return job


def reconcile(store: Store, record: RunRecord, waited: float = GRACE_S,
              gone: str = "GONE") -> RunRecord:
    """The record, with Slurm's ending applied when the job is over and the node has not
    recorded one itself within ``waited`` seconds (compare-and-set: the node's own record
    always wins). ``gone``: what a job Slurm no longer knows ended as (after our own
    scancel, a waiting array task simply vanishes: CANCELLED)."""
    job_id = job_of(record)
    if record.status.terminal or not job_id:
        return record
    state, reason = job_state(job_id)
    if state == "GONE":
        state = gone
    if state in ACTIVE:
        return record
    deadline = time.monotonic() + waited
    while time.monotonic() < deadline:  # the node may be writing its ending now
        record = store.runs.get(record.id)
        if record.status.terminal:
            return record
        time.sleep(0.5)
    status, why = ENDINGS.get(state, (RunStatus.LOST, f"Slurm reports the job {state}"))
    if state == "GONE":
        why = "Slurm no longer knows the job and no ending was recorded"
    record.status, record.finished_at = status, utc_now()
    record.reason = why + (f" ({reason})" if reason and reason != "None" else "")
    try:
        store.runs.save(record, previous=store.runs.get(record.id).status)
    except StoreError:  # the node finished it meanwhile
        pass
    return store.runs.get(record.id)


def run_on_node(run_id: str, store: Store, engine: Engine, hooks: Hooks) -> RunRecord:
    """What the Slurm job does on its node (`repro node-run`): the queued run, fetched
    from the shared stores (code, inputs, lock, image) and executed by this node's engine,
    recorded from ``running`` to its end, with this node's host facts."""
    from .replay import Grants, judge_on_node, plan_replay, prepare
    from .runner import execute

    record = store.runs.get(run_id)
    if record.status != RunStatus.QUEUED:
        hooks.on_line(f"run {record.id} is {record.status}, not queued: nothing to run here")
        return record
    store.local.own(record.id)
    try:
        plan = plan_replay(record, False, Grants(), os.cpu_count() or 1, None)
        res = prepare(plan, record, store, engine, hooks, Grants())
    except ReproError as e:  # what the node could not fetch ends the run, with the reason
        record.status, record.finished_at = RunStatus.FAILED, utc_now()
        record.reason = f"on node {socket.gethostname()}: {e}"
        store.runs.save(record, previous=RunStatus.QUEUED)
        store.local.release(record.id)
        return record

    def slurm_ending(done: RunRecord, series: list[tuple[str, int, float]]) -> None:  # why Slurm
        job_id = os.environ.get("SLURM_JOB_ID")  # stopped it, a replay's verdict: in the
        # run's final write
        if done.status == RunStatus.INTERRUPTED and job_id:
            done.status, done.reason = stopped_why(job_id)
        if done.replay_of:
            judge_on_node(done, store, done.environment.host, series, res.redactor)

    return execute(record, res, store, engine, replace(hooks, on_finished=slurm_ending),
                   previous=RunStatus.QUEUED)


def follow(store: Store, record: RunRecord, on_line: Callable[[str], None],
           on_log: Callable[[bytes], None], poll_s: float = 0.5) -> RunRecord:
    """Until the run ends: its status changes as lines, its live log as the node writes it
    (when this machine can see the node's home), Slurm's endings reconciled."""
    shown = record.status
    log = store.log_path(record.id)
    offset = 0
    while True:
        record = store.runs.get(record.id)
        if record.status != shown:
            shown = record.status
            if not record.status.terminal:
                on_line(f"run {record.id} {record.status}")
        if log.exists():
            with open(log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            if chunk:
                on_log(chunk)
        if record.status.terminal:
            _rest_of_log(store, record, offset, on_log)
            return record
        record = reconcile(store, record)
        if record.status.terminal:
            _rest_of_log(store, record, offset, on_log)
            return record
        time.sleep(poll_s)


def _rest_of_log(store: Store, record: RunRecord, offset: int,
                 on_log: Callable[[bytes], None]) -> None:
    """What the job printed after the last look at its live log (a short job may end
    between two looks): from the stored log."""
    if record.logs is None or record.logs.size <= offset:
        return
    try:
        with store.artifacts.open(record.logs.sha256) as f:
            f.seek(offset)
            rest = f.read()
    except (ReproError, OSError):
        return
    if rest:
        on_log(rest)


def cancel(store: Store, records: list[RunRecord]) -> list[RunRecord]:
    """scancel the runs' jobs in one call (a whole sweep: its array at once, so no waiting
    task starts meanwhile); a running one is stopped and recorded by its node, a waiting
    one is recorded here. Returns them once each has ended (or after a minute)."""
    jobs = []
    for record in records:
        job = job_of(record)
        if (record.executor or {}).get("kind") != "slurm" or not job:
            raise UsageError(f"run {record.id} was not submitted to Slurm; a local run stops "
                             "with Ctrl-C in its terminal")
        if not record.status.terminal:
            jobs.append(job)
    if jobs:
        _slurm("scancel", *sorted(set(jobs)), what=f"scancel {' '.join(sorted(set(jobs)))}")
    ended: dict[str, RunRecord] = {r.id: r for r in records if r.status.terminal}
    deadline = time.monotonic() + 60
    while len(ended) < len(records) and time.monotonic() < deadline:
        for record in records:
            if record.id not in ended:
                now = reconcile(store, store.runs.get(record.id), waited=0,
                                gone="CANCELLED")
                if now.status.terminal:
                    ended[record.id] = now
        time.sleep(0.5)
    return [ended.get(r.id) or store.runs.get(r.id) for r in records]


def submit_array(records: list[RunRecord], store: Store, opts: SlurmOptions, parallel: int,
                 on_line: Callable[[str], None]) -> str:
    """A sweep as one job array (``--array=0-N%P``): every point an ordinary record, queued
    with its task's id (``ARRAY_INDEX``); returns the array's job id. Each task runs its
    own point; a failing one does not stop the others."""
    first = records[0]
    for r in records:
        r.executor = {"kind": "slurm", **opts.doc()}
        store.local.note_launched(r.id)
        store.runs.insert(r)
    folder = store.home / "slurm"
    folder.mkdir(exist_ok=True)
    options = [a for a in sbatch_options(first, opts, folder / "%A_%a.out")
               if not a.startswith("--job-name=")]
    options += [f"--job-name=repro-sweep-{first.name[:40]}-{first.sweep_id or ''}",
                f"--array=0-{len(records) - 1}%{max(1, parallel)}"]
    python = os.environ.get("REPRO_SLURM_PYTHON", sys.executable)
    text = "\n".join([
        "#!/bin/sh", *[f"#SBATCH {shlex.quote(a)}" for a in options],
        f"# repro sweep {first.sweep_id}: task i runs the i-th recorded point",
        f"export REPRO_HOME={shlex.quote(str(store.home))}",
        "set -- " + " ".join(r.id for r in records),
        'shift "$SLURM_ARRAY_TASK_ID"',
        f'exec {shlex.quote(python)} -m orchestrator node-run "$1"']) + "\n"
    path = folder / f"sweep-{first.sweep_id}.sh"
    path.write_text(text)
    try:
        env, notes = job_environment(records)
        for note in notes:
            on_line(f"note: {note}")
        job_id = _slurm("sbatch", "--parsable", "--hold", "--export=ALL", str(path),
                        what="sbatch", env=env).strip().split(";")[0]
    except ReproError as e:
        for r in records:
            r.status, r.finished_at, r.reason = RunStatus.FAILED, utc_now(), f"not submitted: {e}"
            store.runs.save(r, previous=RunStatus.PENDING)
        raise
    for i, r in enumerate(records):
        r.executor = {**(r.executor or {}), "job_id": f"{job_id}_{i}", "array_job_id": job_id}
        r.status = RunStatus.QUEUED
        store.runs.save(r, previous=RunStatus.PENDING)
    _slurm("scontrol", "release", job_id, what=f"release Slurm job {job_id}")
    on_line(f"sweep {first.sweep_id}: {len(records)} points queued as Slurm job array "
            f"{job_id} (at most {max(1, parallel)} at once)")
    return job_id


def follow_all(store: Store, records: list[RunRecord],
               on_done: Callable[[RunRecord], None], poll_s: float = 1.0) -> list[RunRecord]:
    """Until every run ends: each reported once as it ends (Slurm's endings reconciled)."""
    left = {r.id: r for r in records}
    done: dict[str, RunRecord] = {}
    while left:
        for run_id in list(left):
            record = reconcile(store, store.runs.get(run_id), waited=0 if len(left) > 1
                               else GRACE_S)
            if record.status.terminal:
                done[run_id] = record
                del left[run_id]
                on_done(record)
        if left:
            time.sleep(poll_s)
    return [done[r.id] for r in records]
