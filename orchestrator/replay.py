"""Replay a run from its record alone, and say whether the result reproduced.

``plan_replay`` (pure) decides what will run: the record's resolved spec, less what this
machine's user did not grant a run that came from elsewhere; ``prepare`` turns that plan
into a ``Resolution`` (image, snapshot, input bytes, lock, secrets: no spec file is read, it
may have changed); ``verdict`` and ``environment_changes`` are pure comparisons of two records.

A run imported from a bundle never picks its own privileges: it replays without network
unless ``--allow-network``, with only the secrets ``--secret`` names, within this machine's
CPUs and memory, with a timeout, and with inputs from the store (or ``--input``), never from
host paths its record names.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import capture, facts
from .content import annotate
from .engine import Engine
from .engine.image_archive import ensure_present
from .errors import CannotReplay, SpecError, UsageError
from .fsck import check_artifact
from .hashing import hex_of, sha256_file
from .outputs import pair_renamed
from .record import Judging, ResolvedSpec, RunRecord, utc_now
from .resolve import Redactor, Resolution, dir_digest, secret_values, spec_digest
from .runner import Hooks, new_record, new_run_id, start
from .snapshot import Snapshot, extract
from .store import Store

IDENTICAL, DIFFERS, WITHIN_TOLERANCE = "identical", "differs", "within-tolerance"
NOTHING_COMPARED = "nothing-compared"
LOG_COMPARE_LIMIT = 64 << 20  # bytes of each log read to compare them



ULP_SUFFIX = "@ulp"  # outputs.PATH@ulp: an output's tolerance in units in the last place


def parse_tolerances(items: list[str]) -> dict[str, float]:
    """``metrics.NAME=1e-6`` (or ``NAME=1e-6``) -> {NAME: 1e-6}, a metric's absolute
    tolerance; ``outputs.PATH=1e-6`` -> {"outputs.PATH": 1e-6}, an array output's largest
    absolute difference; ``outputs.PATH=2ulp`` -> {"outputs.PATH@ulp": 2}, its largest
    distance in ULPs. Never called identical."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.removeprefix("metrics.")
        ulp = name.startswith("outputs.") and raw.lower().endswith("ulp")
        try:
            value = float(raw[:-3] if ulp else raw)
        except ValueError:
            value = -1.0
        if not sep or not name or name == "outputs." or not math.isfinite(value) or \
                value < 0 or (ulp and value != int(value)):
            raise UsageError(f"--tolerance {item!r}: expected metrics.NAME=ABS_TOLERANCE, "
                             "outputs.PATH=ABS_TOLERANCE or outputs.PATH=NULP, e.g. "
                             "metrics.accuracy=1e-6 or outputs.weights.npy=2ulp")
        out[name + ULP_SUFFIX if ulp else name] = int(value) if ulp else value
    return out


def metric_tolerances(tolerances: dict[str, float]) -> bool:
    """Whether any tolerance is a metric's (with one, outputs without their own tolerance
    may differ: the metrics are what is gated)."""
    return any(not k.startswith("outputs.") for k in tolerances)


def output_tolerance(tolerances: dict[str, float], path: str) -> dict[str, float] | None:
    """An output's own tolerance: {"ulp": N} or {"abs": X}, or None."""
    if f"outputs.{path}{ULP_SUFFIX}" in tolerances:
        return {"ulp": tolerances[f"outputs.{path}{ULP_SUFFIX}"]}
    if f"outputs.{path}" in tolerances:
        return {"abs": tolerances[f"outputs.{path}"]}
    return None


def settle(v: dict[str, Any], local_path: Callable[[str], Path]) -> None:
    """What differs inside each differing output (``content``), then each output's own
    tolerance held against it: the verdict is ``within-tolerance`` when everything that
    differs is within a tolerance (an output without its own counts as within when metric
    tolerances are given, as before), ``differs`` when an output misses its own."""
    annotate(v, local_path)
    tolerances = v.get("tolerances") or {}
    differ = (v.get("outputs") or {}).get("differ", [])
    own = []
    for d in differ:
        tol = output_tolerance(tolerances, d["path"])
        if tol is not None:
            d["tolerance"] = tol
            d["within_tolerance"] = within(d.get("content") or {}, tol)
            own.append(d["within_tolerance"])
    if v["result"] not in (DIFFERS, WITHIN_TOLERANCE) or not own:
        return
    outs = v.get("outputs") or {}
    rest_ok = (v.get("outcome") is None and not outs.get("missing") and not outs.get("extra")
               and all(m.get("ok") for m in v.get("metrics", []))
               and (v.get("logs") is None or (v.get("logs") or {}).get("identical", False))
               and (metric_tolerances(tolerances) or all("tolerance" in d for d in differ)))
    v["result"] = WITHIN_TOLERANCE if rest_ok and all(own) else DIFFERS


def within(content: dict[str, Any], tol: dict[str, float]) -> bool:
    """Arrays (every member of an ``.npz``) of the same shape and dtype, whose largest ULP
    distance (or absolute difference) is within ``tol``."""
    parts = list((content.get("arrays") or {}).values()) if content.get("kind") == "npz" \
        else [content]
    if not parts:
        return False
    for c in parts:
        if "elements" not in c:  # not an array, or its shape/dtype changed
            return False
        if not c.get("differing"):
            continue
        if "ulp" in tol and not c.get("max_ulp", math.inf) <= tol["ulp"]:
            return False
        if "abs" in tol and not c.get("max_abs", math.inf) <= tol["abs"]:
            return False
    return True


def host_changes(original: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Hardware facts that differ between the recording host and this one."""
    return facts.changes(facts.of_host(original), facts.of_host(current), facts.HARDWARE)


def environment_changes(original: RunRecord, replay: RunRecord) -> list[dict[str, Any]]:
    a, b = facts.of_record(original), facts.of_record(replay)
    return facts.changes(a, b, list(a))


# -- verdict ----------------------------------------------------------------------------------

def verdict(original: RunRecord, replay: RunRecord,
            tolerances: dict[str, float] | None = None,
            logs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Did ``replay`` reproduce ``original``? What the spec compares (``compare``: outputs,
    metrics, and the output stream as ``logs``, compared by ``compare_logs``) must agree:
    every output's sha256, every metric exactly (or within its tolerance: never called
    identical), the logs once normalised. A replay with nothing to compare is
    ``nothing-compared``, never identical."""
    tolerances = tolerances or {}
    what = set(original.resolved.compare)
    a = original.outputs if "outputs" in what else {}
    b = replay.outputs if "outputs" in what else {}
    differ = [{"path": p, "original": a[p].model_dump(), "replay": b[p].model_dump()}
              for p in sorted(set(a) & set(b)) if a[p].sha256 != b[p].sha256]
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    # names that carry the time or the host: each paired with the one new name like it
    pairs = pair_renamed(missing, extra)
    renamed = [{"original": x, "replay": y} for x, y in pairs.items()
               if a[x].sha256 == b[y].sha256]
    differ += [{"path": x, "renamed": y, "original": a[x].model_dump(),
                "replay": b[y].model_dump()} for x, y in pairs.items()
               if a[x].sha256 != b[y].sha256]
    missing = [p for p in missing if p not in pairs]
    extra = [p for p in extra if p not in pairs.values()]
    metrics = []
    metrics_ok = metrics_exact = True
    names = set(original.metrics) | set(replay.metrics) if "metrics" in what else set()
    for name in sorted(names):
        x, y = original.metrics.get(name), replay.metrics.get(name)
        tol = tolerances.get(name, 0.0)
        delta = None if x is None or y is None else y - x
        ok = delta is not None and abs(delta) <= tol
        metrics_ok &= ok
        metrics_exact &= delta == 0
        metrics.append({"name": name, "original": x, "replay": y, "delta": delta,
                        "tolerance": tolerances.get(name), "ok": ok})
    same_outcome = (replay.status == original.status
                    and replay.exit_code == original.exit_code)
    logs_same = logs is None or logs.get("identical", False)
    if not same_outcome:
        result = DIFFERS
    elif not a and not b and not names and logs is None:
        result = NOTHING_COMPARED
    elif not differ and not missing and not extra and metrics_exact and logs_same:
        result = IDENTICAL
    elif metric_tolerances(tolerances) and metrics_ok and not missing and not extra and \
            logs_same:  # outputs' own tolerances: ``settle``
        result = WITHIN_TOLERANCE
    else:
        result = DIFFERS
    return {
        "result": result, "original": original.id, "replay": replay.id,
        "outcome": None if same_outcome else {
            "original": f"{original.status} (exit {original.exit_code})",
            "replay": f"{replay.status} (exit {replay.exit_code})" + (
                f": {replay.reason}" if replay.reason else "")},
        "outputs": {"identical": sorted(p for p in set(a) & set(b)
                                        if a[p].sha256 == b[p].sha256),
                    "renamed": renamed, "differ": differ, "missing": missing, "extra": extra},
        "metrics": metrics,
        "logs": logs,
        "compared": sorted(what),
        "tolerances": tolerances,
        "environment": environment_changes(original, replay),
        "checked_at": utc_now(),
    }


def compare_logs(original: RunRecord, replay: RunRecord, store: Store) -> dict[str, Any] | None:
    """The two runs' output streams compared line by line, after the spec's ``log_normalize``
    patterns (multi-line: ^ and $ match at each line) are removed from both (timestamps,
    durations); None when the spec does not
    compare logs."""
    if "logs" not in original.resolved.compare:
        return None
    patterns = [re.compile(p, re.MULTILINE) for p in original.resolved.log_normalize]

    def lines(record: RunRecord) -> list[str] | None:
        if record.logs is None or not store.artifacts.has(record.logs.sha256):
            return None
        with store.artifacts.open(record.logs.sha256) as f:
            text = f.read(LOG_COMPARE_LIMIT).decode("utf-8", "replace")
        for p in patterns:
            text = p.sub("", text)
        return text.splitlines()

    a, b = lines(original), lines(replay)
    doc: dict[str, Any] = {"normalized": original.resolved.log_normalize}
    if a is None or b is None:
        return {**doc, "identical": False,
                "missing": "original" if a is None else "replay"}
    if a == b:
        return {**doc, "identical": True, "lines": len(a)}
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a),
                                                                                   len(b)))
    return {**doc, "identical": False, "lines": len(a), "first_difference": {
        "line": n + 1, "original": a[n][:300] if n < len(a) else None,
        "replay": b[n][:300] if n < len(b) else None}}


# -- replay -------------------------------------------------------------------------------------

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
           note: str | None = None, diagnosis_of: str | None = None) -> RunRecord:
    """Run ``original`` again from its record; returns the new record with its verdict.
    ``elsewhere`` (a scheduler: Slurm) takes the new record instead of this machine's engine;
    the node that runs it fetches what it needs, compares the hardware and writes the
    verdict (``judge_on_node``). ``vary`` changes what runs (`repro diagnose`: a control
    such as a frozen clock), and ``note`` says so in the new record's warnings;
    ``diagnosis_of`` marks the replay as an experiment of that run's diagnosis."""
    grants = grants or Grants()
    plan = plan_replay(original, foreign(original, store), grants, os.cpu_count() or 1,
                       capture.memory_bytes())
    if vary is not None:
        plan.resolved = vary(plan.resolved)
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
        if grants.inputs:
            raise CannotReplay("--input names a file on this machine; a node cannot read it: "
                               "replay here, or put the input in the shared store")
        record = new_record_for_replay(original, plan)
        record.diagnosis_of = diagnosis_of
        record.judging = Judging(tolerances=dict(tolerances or {}), strict_env=strict_env)
        return elsewhere(record)
    current_host, _ = engine.host(plan.resolved.resources.gpus)
    hw = host_changes(original.environment.get("host", {}), current_host)
    for c in hw:
        hooks.on_line(f"warning: {c['fact']} differs from the recording host: {shown_change(c)} "
                      f"({c['hint']})")
    if hw and strict_env:
        raise CannotReplay(f"--strict-env: this host differs from the one that recorded run "
                           f"{original.id} ({', '.join(c['fact'] for c in hw)}); replay on "
                           "matching hardware or drop --strict-env")
    res = prepare(plan, original, store, engine, hooks, grants)
    record = new_record(res, name=original.name, spec=original.spec,
                        spec_path=original.spec_path, params=dict(original.params),
                        replay_of=original.id, diagnosis_of=diagnosis_of,
                        warnings=[f"hardware differs: {c['fact']}" for c in hw] + plan.notes)

    def judge(done: RunRecord, series: list[tuple[str, int, float]]) -> None:  # in the
        # run's final write, not after it
        done.verdict = verdict(original, done, tolerances, compare_logs(original, done, store))
        settle(done.verdict, store.artifacts.local_path)  # what differs inside each file
        _part_ways(done.verdict, store.runs.steps(original.id), series)
        done.verdict = redacted(done.verdict, res.redactor)  # snippets of what jobs wrote

    return start(record, res, store, engine, replace(hooks, on_finished=judge))


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


def judge_on_node(done: RunRecord, store: Store, host: dict[str, Any],
                  series: Sequence[tuple[str, int, float]] = (),
                  redactor: Redactor | None = None) -> None:
    """A replay run by a scheduler's node: the hardware against the recording host's, and
    the verdict, into its final write (``--strict-env`` fails it on other hardware)."""
    original = store.runs.get(str(done.replay_of))
    judging = done.judging or Judging()
    hw = host_changes(original.environment.get("host", {}), host)
    done.warnings += [f"hardware differs: {c['fact']}" for c in hw]
    done.verdict = verdict(original, done, judging.tolerances,
                           compare_logs(original, done, store))
    settle(done.verdict, store.artifacts.local_path)
    _part_ways(done.verdict, store.runs.steps(original.id), list(series))
    if redactor is not None:
        done.verdict = redacted(done.verdict, redactor)
    if hw and judging.strict_env:
        done.warnings.append("--strict-env: this node differs from the recording host ("
                             + ", ".join(c["fact"] for c in hw) + ")")


def series_divergence(original: dict[str, list[tuple[int, float]]],
                      replay: list[tuple[str, int, float]]) -> dict[str, dict[str, Any]]:
    """Where two runs' metric series part ways: per metric logged by both, the first step at
    which the values differ (or one has a step the other lacks), with both values."""
    mine: dict[str, dict[int, float]] = {}
    for name, step, value in replay:
        mine.setdefault(name, {})[step] = value
    out: dict[str, dict[str, Any]] = {}
    for name, points in sorted(original.items()):
        if name not in mine:
            continue
        theirs = dict(points)
        for step in sorted(set(theirs) | set(mine[name])):
            a, b = theirs.get(step), mine[name].get(step)
            same = a == b or (a is not None and b is not None and math.isnan(a)
                              and math.isnan(b))
            if not same:
                out[name] = {"step": step, "original": a, "replay": b,
                             "steps": [len(theirs), len(mine[name])]}
                break
    return out


def _part_ways(v: dict[str, Any] | None, original: dict[str, list[tuple[int, float]]],
               replay: list[tuple[str, int, float]]) -> None:
    if v is not None:
        parted = series_divergence(original, replay)
        if parted:
            v["series"] = parted


def shown_change(change: dict[str, Any]) -> str:
    if "original" in change:
        return f"{change['original']} -> {change['replay']}"
    parts = [f"+{len(change['added'])}", f"-{len(change['removed'])}"]
    if "changed" in change:
        parts.append(f"~{len(change['changed'])}")
    return " ".join(parts)
