"""Replay a run from its record alone, and say whether the result reproduced.

``plan_replay`` (pure) decides what will run: the record's resolved spec, less what this
machine's user did not grant a run that came from elsewhere; ``prepare`` turns that plan
into a ``Resolution`` (image, snapshot, input bytes, lock, secrets: no spec file is read, it
may have changed); the replay's verdict is ``verdicts.py``'s, a pure comparison of two records.

A run imported from a bundle never picks its own privileges: it replays without network
unless ``--allow-network``, with only the secrets ``--secret`` names, within this machine's
CPUs and memory, with a timeout, and with inputs from the store (or ``--input``), never from
host paths its record names.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import capture, partial
from .engine import Engine
from .engine.image_archive import ensure_present
from .errors import CannotReplay, ReproError, SpecError, UsageError
from .fsck import check_artifact
from .hashing import hex_of, sha256_file
from .partial import Prefix, Segment
from .record import HostFacts, Judging, Outcome, ResolvedSpec, RunRecord, Verdict, utc_now
from .resolve import Redactor, Resolution, dir_digest, secret_values, spec_digest
from .runner import Hooks, new_record, new_run_id, start
from .snapshot import Snapshot, extract
from .store import Store
from .verdicts import (
    DIFFERS,
    compare_logs,
    host_changes,
    part_ways,
    prefix_verdict,
    segment_verdict,
    settle,
    verdict,
)

FOREIGN_TIMEOUT_MIN_S = 600.0  # a run from elsewhere without a timeout gets at least this


@dataclass(frozen=True)
class Grants:
    """What the user running a replay allows a run from elsewhere: nothing by default."""

    network: bool = False  # --allow-network (also: pull its image from a registry it names)
    secrets: tuple[str, ...] = ()  # --secret NAME
    inputs: dict[str, Path] = field(default_factory=dict)  # --input NAME=PATH
    timeout_s: float | None = None  # --timeout
    gpus: int = 0  # --gpus N: at most this many of this machine's GPUs
    local_image: bool = False  # --local-image: the engine's copy of an image it does not bring


@dataclass
class ReplayPlan:
    resolved: ResolvedSpec  # what will run
    foreign: bool  # not launched here by this user (a bundle, a pull, a teammate's run)
    notes: list[str] = field(default_factory=list)  # what differs from the record, and why


def asks(record: RunRecord) -> list[str]:
    """What a run asks of the machine that replays it, one line each (shown before a bundle
    is verified)."""
    r = record.resolved
    gpus = r.resources.gpus
    return [f"network: {r.network}", "secrets: " + (", ".join(r.secrets) or "none"),
            f"GPUs: {gpus['count']} ({gpus.get('model') or 'any model'})" if gpus
            else "GPUs: none",
            f"resources: {r.resources.cpus:g} CPUs, {r.resources.memory_bytes >> 20} MiB memory, "
            f"timeout {f'{r.timeout_s:g} s' if r.timeout_s else 'none'}",
            "inputs: " + (", ".join(f"{n} ({i.size} bytes)" for n, i in sorted(
                r.inputs.items())) or "none")]


def foreign(record: RunRecord, store: Store) -> bool:
    """A run this user did not launch on this machine: imported (a bundle, a pull) or in a
    store others write (a teammate's run in the team store). It never picks its own
    network, secrets, limits or host paths."""
    return store.runs.origin(record.id) is not None or not store.local.launched_here(
        record.id)


def plan_replay(record: RunRecord, foreign: bool, grants: Grants, host_cpus: int,
                host_memory: int | None) -> ReplayPlan:
    """What replaying ``record`` will run. Pure. A run recorded here replays as recorded
    (``--timeout`` aside); a foreign one gets only what ``grants`` allow."""
    r = record.resolved
    update: dict[str, Any] = {}
    notes: list[str] = []
    if grants.timeout_s is not None:
        update["timeout_s"] = grants.timeout_s
    if not foreign:
        return ReplayPlan(resolved=r.model_copy(update=update), foreign=False)
    asked = (r.resources.gpus or {}).get("count", 0)
    if asked > grants.gpus:  # a GPU job run without them would only mislead the verdict
        raise CannotReplay(f"run {record.id} asks for {asked} GPU(s) "
                           f"({(r.resources.gpus or {}).get('model') or 'any model'}); a run "
                           f"from elsewhere gets none unless granted: pass --gpus {asked}")
    if r.network != "none" and not grants.network:
        update["network"] = "none"
        notes.append(f"ran without network: the run asks for network {r.network} (pass "
                     "--allow-network to grant it)")
    withheld = [n for n in r.secrets if n not in grants.secrets]
    if withheld:
        update["secrets"] = [n for n in r.secrets if n in grants.secrets]
        notes.append(f"secrets not passed: {', '.join(withheld)} (pass --secret NAME to "
                     "grant one)")
    resources: dict[str, Any] = {}
    if r.resources.cpus > host_cpus:
        resources["cpus"] = float(host_cpus)
        notes.append(f"CPU limit lowered from {r.resources.cpus:g} to this machine's "
                     f"{host_cpus} (threads stay {r.resources.threads})")
    if host_memory and r.resources.memory_bytes > host_memory:
        resources.update(memory_bytes=host_memory, memory=f"{host_memory >> 20}m")
        notes.append(f"memory limit lowered from {r.resources.memory_bytes >> 20} MiB to "
                     f"this machine's {host_memory >> 20} MiB")
    if resources:
        update["resources"] = r.resources.model_copy(update=resources)
    default = max(FOREIGN_TIMEOUT_MIN_S, 10 * (record.duration_s or 0))
    if grants.timeout_s is None and (r.timeout_s is None or r.timeout_s > default):
        # the run does not choose how long it may hold this machine: the grant does
        update["timeout_s"] = default
        notes.append(f"timeout set to {default:g} s: the run records "
                     + ("none" if r.timeout_s is None else f"{r.timeout_s:g} s") +
                     " (pass --timeout to choose)")
    return ReplayPlan(resolved=r.model_copy(update=update), foreign=True, notes=notes)


def prepare(plan: ReplayPlan, record: RunRecord, store: Store, engine: Engine, hooks: Hooks,
            grants: Grants) -> Resolution:
    """A Resolution for the plan: the same image, snapshot, input bytes, lock; secrets from
    this shell."""
    r = plan.resolved
    ensure_present(r.image, store, engine, hooks.on_line, registries=not plan.foreign
                   or grants.network, foreign=plan.foreign, local_image=grants.local_image)
    _check(record, store, "code snapshot", r.code.snapshot)
    snapshot = Snapshot(ref=r.code, source_date_epoch=int(r.env.get("SOURCE_DATE_EPOCH", "0")),
                        extracted=extract(r.code.snapshot, store))
    sources = {name: _input_source(record, name, store, plan.foreign, grants.inputs.get(name))
               for name in r.inputs}
    lock_path = None
    if r.packages is not None:
        _check(record, store, f"package lock {r.packages.lock}", r.packages.sha256)
        lock_path = store.artifacts.local_path(r.packages.sha256)
    try:
        secret_env = secret_values(r.secrets, f"run {record.id}")
    except SpecError as e:
        raise CannotReplay(f"{e}; replay again once it is") from None
    return Resolution(resolved=r, spec_digest=spec_digest(r), snapshot=snapshot,
                      input_sources=sources, lock_path=lock_path, secret_env=secret_env)


def _input_source(record: RunRecord, name: str, store: Store, foreign: bool,
                  given: Path | None) -> Path:
    """Where input ``name``'s recorded bytes are: the store, a ``--input`` path, or (for a
    run recorded here) the path it was read from; each hash-checked."""
    inp = record.resolved.inputs[name]
    if inp.kind == "file" and given is None and store.artifacts.has(inp.sha256):
        _check(record, store, f"input {name}", inp.sha256)
        return store.artifacts.local_path(inp.sha256)
    path = given if given is not None else None if foreign else Path(inp.path)
    if path is not None:
        if inp.kind == "file" and path.is_file() and sha256_file(path)[0] == inp.sha256:
            return path
        if inp.kind == "dir" and path.is_dir() and dir_digest(path, store)[0] == inp.sha256:
            return path
        if given is not None:
            raise CannotReplay(f"--input {name}={given}: its sha256 is not the recorded "
                               f"{inp.sha256[:16]}...; give the same bytes the run read")
    if foreign:
        raise CannotReplay(f"run {record.id}: input {name} (sha256 {inp.sha256[:16]}...) is not "
                           "in the store, and the run was not launched here (its record's "
                           f"paths are not read); give it with --input {name}=PATH (it is "
                           "hash-checked)")
    raise CannotReplay(f"run {record.id}: input {name} (sha256 {inp.sha256[:16]}...) is not in "
                       f"the store and {inp.path} is missing or changed; restore it, give it "
                       f"with --input {name}=PATH, or verify from a bundle that carries it")


def _check(record: RunRecord, store: Store, what: str, digest: str) -> None:
    """A stored artifact a replay will use must exist and still hash to its name."""
    problem = check_artifact(store, hex_of(digest))
    if problem == "missing":
        raise CannotReplay(f"run {record.id}: {what} ({hex_of(digest)[:16]}...) is not in the "
                           "store; verify from an exported bundle (`repro export RUN --bundle "
                           "DIR` where the run was recorded)")
    if problem == "corrupt":
        raise CannotReplay(f"run {record.id}: {what} ({hex_of(digest)[:16]}...) is corrupt in "
                           "the store (its bytes no longer match their sha256); run `repro "
                           "fsck` and restore it from a bundle")


def replay(original: RunRecord, store: Store, engine: Engine, hooks: Hooks,
           tolerances: dict[str, float] | None = None,
           strict_env: bool = False, grants: Grants | None = None,
           elsewhere: Callable[[RunRecord], RunRecord] | None = None,
           vary: Callable[[ResolvedSpec], ResolvedSpec] | None = None,
           note: str | None = None, diagnosis_of: str | None = None,
           part: Prefix | Segment | None = None) -> RunRecord:
    """Run ``original`` again from its record; returns the new record with its verdict.
    ``elsewhere`` (a scheduler: Slurm) takes the new record instead of this machine's engine;
    the node that runs it fetches what it needs, compares the hardware and writes the
    verdict (``judge_on_node``). ``vary`` changes what runs (`repro diagnose`: a control
    such as a frozen clock), and ``note`` says so in the new record's warnings;
    ``diagnosis_of`` marks the replay as an experiment of that run's diagnosis. ``part``: a
    prefix of the steps, or a segment between two checkpoints (``partial.py``); the job is
    stopped once it has run it, and only that is judged; here only, not on a scheduler's
    node."""
    grants = grants or Grants()
    plan = plan_replay(original, foreign(original, store), grants, os.cpu_count() or 1,
                       capture.memory_bytes())
    if vary is not None:
        plan.resolved = vary(plan.resolved)
    if isinstance(part, Segment):
        plan.resolved = part.resumed(plan.resolved)
    if note is not None:
        plan.notes.append(note)
    if plan.foreign:
        hooks.on_line(f"run {original.id} was not launched here by you (a teammate's run, "
                      "an import, a pull or a bundle): it gets only what you grant; it asks "
                      "for:")
        for line in asks(original):
            hooks.on_line(f"  {line}")
    for note in plan.notes:
        hooks.on_line(f"note: {note}")
    if elsewhere is not None:
        if part is not None:
            raise UsageError("--steps, --budget and --segment stop the job from this "
                             "machine; verify part of a run here, without --executor")
        if grants.inputs:
            raise CannotReplay("--input names a file on this machine; a node cannot read it: "
                               "replay here, or put the input in the shared store")
        record = new_record_for_replay(original, plan)
        record.diagnosis_of = diagnosis_of
        record.judging = Judging(tolerances=dict(tolerances or {}), strict_env=strict_env)
        return elsewhere(record)
    current_host, _ = engine.host(plan.resolved.resources.gpus)
    hw = host_changes(original.environment.host, HostFacts.model_validate(current_host))
    for c in hw:
        hooks.on_line(f"warning: {c.fact} differs from the recording host: {c.described} "
                      f"({c.hint})")
    if hw and strict_env:
        raise CannotReplay(f"--strict-env: this host differs from the one that recorded run "
                           f"{original.id} ({', '.join(c.fact for c in hw)}); replay on "
                           "matching hardware or drop --strict-env")
    res = prepare(plan, original, store, engine, hooks, grants)
    record = new_record(res, name=original.name, spec=original.spec,
                        spec_path=original.spec_path, params=dict(original.params),
                        replay_of=original.id, diagnosis_of=diagnosis_of,
                        warnings=[f"hardware differs: {c.fact}" for c in hw] + plan.notes)

    stopper = None
    if part is not None:
        hooks.on_line(f"note: {part.described(original)}")
        if isinstance(part, Segment):  # the job resumes from the recorded checkpoint
            sha = original.outputs[part.start_path].sha256
            _check(original, store, f"checkpoint {part.start_path}", sha)
            res.placed = {part.start_path: store.artifacts.local_path(sha)}
        stopper = partial.StopAt(part.ready_in(store.work_path(record.id) / "code"),
                                 lambda job_id: _stop(engine, job_id))
        hooks = _watched(hooks, stopper)

    def judged(done: RunRecord, series: list[tuple[str, int, float]]) -> None:  # in the
        # run's final write, not after it
        stopped = stopper is not None and stopper.fired.is_set()
        # a segment is judged as one however it ended (it began in the middle); a prefix
        # whose job ended before its stop ran whole, and is judged whole
        if isinstance(part, Segment) or (part is not None and stopped):
            assert part is not None
            if stopped:
                done.reason = (f"stopped after step {part.through:,} of {part.of_steps:,}: a "
                               "prefix verify" if isinstance(part, Prefix) else
                               f"stopped after the checkpoint of step {part.end:,}: a "
                               "segment verify")
            done.verdict = judge_part(original, done, store, part, series, res.redactor,
                                      stopped)
        else:
            done.verdict = judge(original, done, store, tolerances, series, res.redactor)

    return start(record, res, store, engine, replace(hooks, on_finished=judged))


def _watched(hooks: Hooks, stopper: partial.StopAt) -> Hooks:
    """``hooks`` that tell ``stopper`` the job's id and every point; the stop is the cancel
    a sweep's Ctrl-C sets (the run ends ``interrupted``; ``judged`` says why)."""
    first = hooks.on_start

    def on_start(job_id: str) -> None:
        stopper.started(job_id)
        first(job_id)

    return replace(hooks, on_start=on_start, on_points=stopper.points, cancel=stopper.fired)


def _stop(engine: Engine, job_id: str) -> None:
    """Stop the job at once, with a client of its own (this runs off the main thread)."""
    client = engine.another() if hasattr(engine, "another") else engine
    try:
        client.cancel(job_id, 0)
    except ReproError:
        pass  # the job ended meanwhile: judged as it ended
    finally:
        if client is not engine and hasattr(client, "close"):
            client.close()


def judge_part(original: RunRecord, done: RunRecord, store: Store, part: Prefix | Segment,
               series: Sequence[tuple[str, int, float]], redactor: Redactor | None,
               stopped: bool = True) -> Verdict:
    """The verdict on a prefix or a segment: only what ran is compared. A job that ended
    before it was stopped must have ended as the original did."""
    steps = store.runs.steps(original.id)
    if isinstance(part, Prefix):
        v = prefix_verdict(original, done, part.through, part.of_steps, steps, list(series),
                           compare_logs(original, done, store, prefix=True))
    else:
        v = segment_verdict(original, done, part.start, part.end, part.end_path,
                            part.of_steps, steps, list(series))
        settle(v, store.artifacts.local_path)
    if not stopped and (done.status, done.exit_code) != (original.status, original.exit_code):
        v.outcome = Outcome(original=f"{original.status} (exit {original.exit_code})",
                            replay=f"{done.status} (exit {done.exit_code})"
                            + (f": {done.reason}" if done.reason else ""))
        v.result = DIFFERS
    if redactor is not None and redactor.needles:
        v = Verdict.model_validate(redacted(v.model_dump(mode="json"), redactor))
    return v


def judge(original: RunRecord, done: RunRecord, store: Store,
          tolerances: dict[str, float] | None, series: Sequence[tuple[str, int, float]],
          redactor: Redactor | None) -> Verdict:
    """The verdict on a finished replay: the comparison, what differs inside each file and
    where the metric series part ways, with the secrets it was given redacted out of the
    snippets it quotes of what the jobs wrote."""
    v = verdict(original, done, tolerances, compare_logs(original, done, store))
    settle(v, store.artifacts.local_path)
    part_ways(v, store.runs.steps(original.id), list(series))
    if redactor is not None and redactor.needles:
        v = Verdict.model_validate(redacted(v.model_dump(mode="json"), redactor))
    return v


def new_record_for_replay(original: RunRecord, plan: ReplayPlan) -> RunRecord:
    """The replay's pending record, for a node to run: what ``plan`` will run."""
    from .settings import user

    return RunRecord.model_validate({
        "id": new_run_id(), "name": original.name, "spec": original.spec,
        "spec_path": original.spec_path, "spec_digest": spec_digest(plan.resolved),
        "resolved": plan.resolved, "hermetic": plan.resolved.network == "none",
        "params": dict(original.params), "created_at": utc_now(), "user": user(),
        "host": socket.gethostname()[:256], "replay_of": original.id,
        "warnings": list(plan.notes)})


def redacted(doc: Any, redactor: Redactor) -> Any:
    """``doc`` with every secret value this replay knows redacted out of its strings (a
    verdict quotes the lines of differing text outputs, which a job may have filled with a
    secret)."""
    if not redactor.needles:
        return doc
    if isinstance(doc, str):
        return redactor.redact(doc)
    if isinstance(doc, dict):
        return {redacted(k, redactor): redacted(v, redactor) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redacted(v, redactor) for v in doc]
    return doc


def judge_on_node(done: RunRecord, store: Store, host: HostFacts,
                  series: Sequence[tuple[str, int, float]] = (),
                  redactor: Redactor | None = None) -> None:
    """A replay run by a scheduler's node: the hardware against the recording host's, and
    the verdict, into its final write (``--strict-env`` fails it on other hardware)."""
    original = store.runs.get(str(done.replay_of))
    judging = done.judging or Judging()
    hw = host_changes(original.environment.host, host)
    done.warnings += [f"hardware differs: {c.fact}" for c in hw]
    done.verdict = judge(original, done, store, judging.tolerances, series, redactor)
    if hw and judging.strict_env:
        done.warnings.append("--strict-env: this node differs from the recording host ("
                             + ", ".join(c.fact for c in hw) + ")")


