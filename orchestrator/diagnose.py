"""Why a run does not reproduce, and by how much: `repro diagnose RUN`.

Modelled on reprotest (Reproducible Builds), which builds twice with every variation it
knows applied, then lets one go at a time. Here the variations are the ones that move the
bits of ML jobs, and each experiment is an ordinary replay recorded in the store (its
verdict against the original, its warnings naming the experiment):

1. **plain**: K replays as recorded. Identical to the original and to each other: nothing
   to diagnose.
2. **controlled**: two replays with every control that applies on: the wall clock frozen at
   the recorded start, Python's ``random``/numpy/torch seeded, ``PYTHONHASHSEED`` fixed, one
   thread, torch's deterministic algorithms. What still differs between these two is
   beyond repro's controls: OS entropy, a race, something read from outside.
3. **released, one factor at a time**: a controlled replay with that one control off (as
   recorded). A place in a file (a line, a JSON path, an array element) that differs from
   the controlled replay where the controlled pair agree moves with that factor.
4. **threads again**, when threads are implicated: a second replay at the recorded thread
   count. Differing again means threads race; agreeing means the result depends on the
   count alone.

Controls already in force (``determinism: strict`` seeds and fixes the hash seed; a
one-CPU run has one thread) are not experiments. Each differing output ends as one
sentence naming its causes and where in the file each shows, and the fix to try. The
diagnosis is stored with the run (``RunStore.add_diagnosis``) and shown on its page.

``analyse`` is pure (records and a ``differences`` function in, findings out) so the
reasoning is unit-tested without an engine.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .content import places
from .engine import Engine
from .errors import ExitCode, ReproError, UsageError
from .outputs import name_pattern, pair_renamed
from .record import ResolvedSpec, RunRecord, RunStatus, utc_now
from .resolve import THREAD_VARS, Redactor
from .runner import Hooks
from .store import Store

if TYPE_CHECKING:
    from .replay import Grants

WHOLE = frozenset({"*"})  # the file differs as a whole (not compared by place)
OUTCOME = "(outcome)"  # how the run ended, as a subject of the diagnosis


class DiagnosisInterrupted(ReproError):
    exit_code = ExitCode.INTERRUPTED


@dataclass(frozen=True)
class Factor:
    name: str
    control: str  # what controlling it means
    cause: str  # what it is, as a cause
    free: str  # "only when ..." (the control off)
    fix: str  # what to try


FACTORS = (
    Factor("clock", "the wall clock frozen at the recorded start", "the wall clock",
           "the clock runs", "write no timestamps into outputs (log them instead, or take "
           "them from SOURCE_DATE_EPOCH, which repro fixes), and seed nothing from the clock "
           "(take the run's seed: REPRO_SEED, or repro.seed_everything())"),
    Factor("seeds", "random, numpy and torch seeded from the run's seed",
           "unseeded randomness", "generators are left unseeded",
           "seed every generator from the run's seed (repro.seed_everything(), or `determinism: "
           "strict` in the spec, which seeds random, numpy and torch)"),
    Factor("hashseed", "PYTHONHASHSEED fixed", "hash randomisation (PYTHONHASHSEED)",
           "PYTHONHASHSEED is left random", "iterate sets and dicts of strings in sorted "
           "order (sorted(names)), or set `determinism: strict`, which fixes PYTHONHASHSEED"),
    Factor("threads", "one thread (cpus 1; OMP/MKL/OpenBLAS threads 1)", "the thread count",
           "it runs with the recorded threads", "combine per-thread results in a fixed order "
           "(by index, not as threads finish), or keep resources.cpus as recorded"),
    Factor("gpu", "torch deterministic algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8, cuDNN "
           "benchmark off", "nondeterministic GPU kernels", "GPU kernels may pick their "
           "algorithms", "call repro.seed_everything() (torch's deterministic algorithms, "
           "warn-only, CUBLAS_WORKSPACE_CONFIG=:4096:8, cuDNN benchmark off), or set "
           "`determinism: strict`"),
)
BY_NAME = {f.name: f for f in FACTORS}
ENTROPY = ("OS entropy or a race", "look for default_rng() or os.urandom without a seed, "
           "SystemRandom, uuid4, threads that finish in a varying order, or a clock read "
           "outside Python (a shell's date)",
           "draw every random number from a generator seeded by the run's seed")


def applicable(record: RunRecord) -> tuple[list[Factor], dict[str, str]]:
    """The factors worth an experiment for ``record``, and why each other one is not."""
    r = record.resolved
    strict = r.determinism == "strict"
    skipped: dict[str, str] = {}
    if strict:
        skipped["seeds"] = "already forced: the run was recorded with determinism: strict"
    hashseed = r.env.get("PYTHONHASHSEED")
    if hashseed not in (None, "random"):
        skipped["hashseed"] = f"already fixed: PYTHONHASHSEED={hashseed}"
    if r.resources.threads <= 1 and r.resources.cpus <= 1:
        skipped["threads"] = "the run already used one thread (cpus 1)"
    if not r.resources.gpus:
        skipped["gpu"] = "the run uses no GPU"
    elif strict:
        skipped["gpu"] = "already forced: the run was recorded with determinism: strict"
    return [f for f in FACTORS if f.name not in skipped], skipped


def controlled(r: ResolvedSpec, names: Iterable[str], at: float) -> ResolvedSpec:
    """``r`` with the controls ``names`` on (what runs; the record keeps it)."""
    env = dict(r.env)
    update: dict[str, Any] = {}
    for name in names:
        if name == "clock":
            env["REPRO_FROZEN_CLOCK"] = f"{at:.3f}"
        elif name == "seeds":
            env["REPRO_FORCE_SEEDS"] = "1"
        elif name == "hashseed":
            env["PYTHONHASHSEED"] = str(r.seed)
        elif name == "threads":
            env.update({v: "1" for v in THREAD_VARS})
            update["resources"] = r.resources.model_copy(update={"cpus": 1.0, "threads": 1})
        elif name == "gpu":
            env.update(REPRO_TORCH_DETERMINISTIC="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")
        else:
            raise ValueError(f"unknown factor {name!r}")
    return r.model_copy(update={"env": env, **update})


# -- comparing two runs by place ---------------------------------------------------------------

Differences = Callable[[RunRecord, RunRecord], dict[str, frozenset[str]]]


def differences(local_path: Callable[[str], Any], original: RunRecord | None = None
                ) -> Differences:
    """What differs between two runs, by subject (each output path, ``metric NAME``, the
    outcome), each with the places inside it that differ (``WHOLE`` when the file is not
    compared by place). Only what the spec compares. Each pair is compared once: the
    reasoning asks about the same pairs again, and each answer reads both runs' files.

    An output whose name carries the time or the host goes by the ``original``'s name for
    it in every run (paired by pattern, ``outputs.pair_renamed``), and ``name`` is among
    its places where the two runs named it differently."""
    seen: dict[tuple[str, str], dict[str, frozenset[str]]] = {}
    known = set(original.outputs) if original is not None else set()

    def by_original_name(rec: RunRecord) -> dict[str, str]:  # subject -> rec's own path
        paths = set(rec.outputs)
        pairs = pair_renamed(sorted(known - paths), sorted(paths - known))
        theirs = {new: old for old, new in pairs.items()}
        return {theirs.get(p, p): p for p in paths}

    def diff(a: RunRecord, b: RunRecord) -> dict[str, frozenset[str]]:
        if (a.id, b.id) not in seen:
            seen[a.id, b.id] = compare(a, b)
        return seen[a.id, b.id]

    def compare(a: RunRecord, b: RunRecord) -> dict[str, frozenset[str]]:
        what = set(a.resolved.compare)
        out: dict[str, frozenset[str]] = {}
        if a.status != b.status or a.exit_code != b.exit_code:
            out[OUTCOME] = frozenset({f"{b.status} (exit {b.exit_code})"})
        if "outputs" in what:
            na, nb = by_original_name(a), by_original_name(b)
            for path in sorted(set(na) | set(nb)):
                pa, pb = na.get(path), nb.get(path)
                if pa is None or pb is None:
                    out[path] = frozenset({"missing"})
                    continue
                x, y = a.outputs[pa], b.outputs[pb]
                renamed = frozenset({"name"}) if pa != pb else frozenset()
                if x.sha256 != y.sha256:
                    try:
                        found = places(path, local_path(x.sha256), local_path(y.sha256))
                    except OSError:
                        found = None
                    out[path] = (found or WHOLE) | renamed  # no place: the bytes (format)
                elif renamed:
                    out[path] = renamed
        if "metrics" in what:
            for name in sorted(set(a.metrics) | set(b.metrics)):
                if a.metrics.get(name) != b.metrics.get(name):
                    out[f"metric {name}"] = frozenset({"value"})
        return out

    return diff


# -- the reasoning ------------------------------------------------------------------------------

@dataclass
class Runs:
    """The experiments' replays."""

    plain: list[RunRecord]
    controls: list[str] = field(default_factory=list)  # factor names controlled
    pair: list[RunRecord] = field(default_factory=list)  # two controlled replays
    released: dict[str, RunRecord] = field(default_factory=dict)  # factor -> replay
    threads_again: RunRecord | None = None


def analyse(original: RunRecord, runs: Runs, diff: Differences) -> dict[str, Any]:
    """Findings, one per subject that differs: its causes (factors, and what is left when
    every control is on), where each shows, and a plain sentence."""
    plain_self: dict[str, frozenset[str]] = {}
    versus_original: dict[str, frozenset[str]] = {}
    for rec in runs.plain:
        _merge(versus_original, diff(original, rec))
    for rec in runs.plain[1:]:
        _merge(plain_self, diff(runs.plain[0], rec))
    subjects = sorted(set(plain_self) | set(versus_original))
    findings = []
    for s in subjects:
        finding: dict[str, Any] = {"subject": s, "noise_here": s in plain_self,
                                   "differs_from_original": s in versus_original}
        if s == OUTCOME:
            failed = next(r for r in runs.plain if (r.status, r.exit_code) != (
                original.status, original.exit_code))
            finding.update(causes=[{"cause": "outcome"}], sentence=(
                f"the replay ends {failed.status} (exit {failed.exit_code})"
                + (f": {failed.reason}" if failed.reason else "")
                + f" where the original {original.status}: fix that first (`repro show "
                  f"{failed.id}`); nothing else was tried"), fixes=[])
            findings.append(finding)
            continue
        causes = _causes(s, runs, diff)
        finding["causes"] = causes
        finding["sentence"], finding["fixes"] = _sentence(s, causes, runs, finding)
        size = how_much(s, runs.plain)
        if size:
            finding["how_much"] = size
            finding["sentence"] += f"; in a plain replay: {size}"
        findings.append(finding)
    causes = grouped(findings, runs)
    moved = {f["subject"]: f["how_much"] for f in findings if f.get("how_much")}
    for c in causes:  # by how much each file moved, where a plain replay shows it
        for s in c["subjects"]:
            if s["subject"] in moved:
                s["how_much"] = moved[s["subject"]]
    ops = nondeterministic_ops([original, *runs.plain])
    differing = [f for f in findings if f["subject"] != OUTCOME]
    if ops and original.resolved.resources.gpus and differing:
        causes.insert(0, {
            "cause": "gpu-ops", "subjects": [{"subject": f["subject"], "where": ""}
                                             for f in differing],
            "line": f"nondeterministic GPU kernels, the likely cause: torch ran "
                    f"{_and(ops[:6])}{' and more' if len(ops) > 6 else ''} without a "
                    "deterministic implementation (warnings recorded with the run)",
            "fixes": ["replace those ops with deterministic ones (for a pooling layer, a "
                      "fixed-size pool or a mean; for scatter/index adds, a sort-based "
                      "sum), or run them on the CPU"]})
    return {"findings": findings, "causes": causes}


OP_WARNING = re.compile(r"^\s*([A-Za-z_][\w:.]*)\s+does not have a deterministic "
                        r"implementation")


def nondeterministic_ops(records: Iterable[RunRecord]) -> list[str]:
    """The ops torch ran without a deterministic kernel, from the determinism warnings the
    runs recorded (warn-only mode), each once."""
    ops: dict[str, None] = {}
    for r in records:
        container = r.environment.get("container") or {}
        for text in container.get("determinism_warnings") or []:
            m = OP_WARNING.match(str(text))
            if m:
                ops[m.group(1)] = None
    return list(ops)


def broken_control(runs: Runs) -> dict[str, Any] | None:
    """When the controlled pair did not end as the plain replays did, the controls broke the
    job: how it ended, and which control's release let it run again (the likely culprit)."""
    if not runs.plain or not runs.pair:
        return None
    ran = (runs.plain[0].status, runs.plain[0].exit_code)
    broken = next((r for r in runs.pair if (r.status, r.exit_code) != ran), None)
    if broken is None:
        return None
    freed = [name for name, rec in runs.released.items() if (rec.status, rec.exit_code) == ran]
    code = broken.exit_code
    how = f"exit {code}" if code is not None else str(broken.status)
    reason = broken.reason if broken.reason and (code is None or str(code) not in
                                                 broken.reason) else ""  # not said twice
    how += "".join(f", {x}" for x in (_signal(code), reason) if x)
    if freed:
        which = (f": with {' or '.join(BY_NAME[n].cause for n in freed)} free it ran as "
                 f"recorded, so {_and(BY_NAME[n].control for n in freed)} stopped it")
    else:
        which = f": with every control on it ends {broken.status}"
    line = (f"inconclusive: the control{'' if len(freed) == 1 else 's'} broke the job "
            f"({how}){which} (run {broken.id}); the experiments could not tell why these "
            "differ, and the job's code is not to blame for that")
    return {"run": broken.id, "status": str(broken.status), "exit_code": code,
            "reason": broken.reason or "", "culprits": freed, "line": line}


def _signal(code: int | None) -> str:
    names = {139: "a segmentation fault", 134: "an abort", 137: "killed"}
    return names.get(code or 0, "")


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def grouped(findings: list[dict[str, Any]], runs: Runs) -> list[dict[str, Any]]:
    """Each cause once, with the subjects (files, metrics) it explains under it, where in
    each it shows, and its fixes: what a report leads with."""
    groups: dict[str, dict[str, Any]] = {}
    renamed: dict[str, list[str]] = {}  # cause -> subjects whose name it moves
    recorded = runs.plain[0].resolved.resources.threads if runs.plain else 0

    def add(key: str, line: str, subject: str, where: str, fixes: list[str]) -> None:
        g = groups.setdefault(key, {"cause": key, "line": line, "subjects": [], "fixes": []})
        g["subjects"].append({"subject": subject, "where": where})
        g["fixes"] += [f for f in fixes if f not in g["fixes"]]

    for f in findings:
        s = f["subject"]
        if s == OUTCOME:
            add("outcome", f["sentence"], s, "", f.get("fixes", []))
            continue
        for c in f.get("causes", []):
            where = describe(c["places"])
            if c["cause"] == "entropy":
                on = _and(BY_NAME[n].control for n in runs.controls) if runs.controls \
                    else "every control on"
                add("entropy", f"{ENTROPY[0]}: these still differ with {on} ({ENTROPY[1]})",
                    s, where, [ENTROPY[2]])
                continue
            factor = BY_NAME[c["cause"]]
            if c["cause"] == "threads":
                key = "threads:race" if c.get("race") else "threads"
                line = (f"{factor.cause}: threads race (these differ between runs at the "
                        f"recorded {recorded} threads and are identical with one)"
                        if c.get("race") else f"{factor.cause}: identical with one thread, "
                        f"not with the recorded {recorded}")
            else:
                key = c["cause"]
                line = (f"{factor.cause}: these differ only when {factor.free}; identical "
                        f"with {factor.control}")
            if "name" in c["places"]:
                renamed.setdefault(key, []).append(s)
            only_names = set(c["places"]) == {"name"}
            add(key, line, s, where, [] if only_names else [factor.fix])
        if not f.get("causes"):
            kind = f.get("kind", "rare")
            add(kind, f["sentence"] if kind != "inconclusive" else f["inconclusive"], s, "",
                f.get("fixes", []))
    for key, subjects in renamed.items():
        groups[key]["fixes"].insert(0, rename_fix(subjects))
        groups[key]["line"] += f"; {named_after(subjects, key)}"
    return list(groups.values())


def named_after(subjects: list[str], cause: str) -> str:
    """Whose names carry what: the writer, where repro knows it."""
    what = "the time" if cause == "clock" else "the host" if cause == "host" else \
        "the run's conditions"
    n = len(subjects)
    which = (": Hydra's run folder, outputs/<date>/<time>" if any(
        "/.hydra/" in f"/{s}" for s in subjects) else ": TensorBoard's event files, "
        "events.out.tfevents.<time>.<host>" if any(STAMPED_NAME_PART in s for s in subjects)
        else "")
    return (f"{'its name carries' if n == 1 else f'{n} of these are named after'} "
            f"{what}{which}")


def rename_fix(subjects: list[str]) -> str:
    """What to do about outputs whose names carry the time or the host: the writer's own
    setting where repro knows it, else leaving them out of the comparison."""
    if any("/.hydra/" in f"/{s}" for s in subjects):
        return ("give Hydra a run folder without the date and time: pass "
                "hydra.run.dir=outputs/run (`repro init` puts it in the command); the files "
                "in it then keep their names")
    globs = list(dict.fromkeys(STAMPED_NAME if STAMPED_NAME_PART in s else name_pattern(s)
                               for s in subjects))
    return (f"name {'the file' if len(subjects) == 1 else 'these files'} without the time "
            "or host, or leave them out of the comparison (recorded as excluded): outputs: "
            f"{{exclude: [{', '.join(repr(g) for g in globs[:4])}]}}"
            + (" (`repro init` proposes it for TensorBoard writers)"
               if STAMPED_NAME in globs else ""))


STAMPED_NAME_PART, STAMPED_NAME = "events.out.tfevents.", "**/events.out.tfevents.*"


def how_much(subject: str, plain: list[RunRecord]) -> str | None:
    """By how much ``subject`` moved in the first plain replay that differs from the
    original there: its verdict's content summary, or a metric's values."""
    for rec in plain:
        v = rec.verdict or {}
        for d in (v.get("outputs") or {}).get("differ", []):
            if d.get("path") == subject and (d.get("content") or {}).get("summary"):
                return str(d["content"]["summary"])
        for m in v.get("metrics") or []:
            if f"metric {m.get('name')}" == subject and m.get("delta"):
                return f"{m['original']!r} -> {m['replay']!r} (delta {m['delta']:.3g})"
    return None


def _merge(into: dict[str, frozenset[str]], more: Mapping[str, frozenset[str]]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, frozenset()) | v


def _causes(s: str, runs: Runs, diff: Differences) -> list[dict[str, Any]]:
    if len(runs.pair) < 2 or broken_control(runs) is not None:
        return []  # a broken control explains nothing (and a broken pair "agrees")
    c1, c2 = runs.pair
    noise = diff(c1, c2).get(s, frozenset())
    causes: list[dict[str, Any]] = []
    for name, rec in runs.released.items():
        if (rec.status, rec.exit_code) != (c1.status, c1.exit_code):
            continue  # the job failed with this control off: the experiment says so
        moved = diff(c1, rec).get(s, frozenset())
        again = None
        if name == "threads" and runs.threads_again is not None:  # a second look
            moved |= diff(c1, runs.threads_again).get(s, frozenset())
            again = diff(rec, runs.threads_again).get(s, frozenset())
        own = moved - noise if "*" not in noise else frozenset()
        if not own:
            continue
        cause: dict[str, Any] = {"cause": name, "places": sorted(own, key=_place_order)}
        if again is not None:
            cause["race"] = bool(again - noise)
        causes.append(cause)
    if noise:
        causes.append({"cause": "entropy", "places": sorted(noise, key=_place_order)})
    return causes


def _sentence(s: str, causes: list[dict[str, Any]], runs: Runs,
              finding: dict[str, Any]) -> tuple[str, list[str]]:
    parts, fixes = [], []
    recorded = runs.plain[0].resolved.resources.threads if runs.plain else 0
    for c in causes:
        where = describe(c["places"])
        if c["cause"] == "entropy":
            on = " and ".join(BY_NAME[n].control for n in runs.controls) or "every control on"
            parts.append(f"on {ENTROPY[0]} ({where} still differ{_s(c['places'])} with "
                         f"{on}: {ENTROPY[1]})")
            fixes.append(ENTROPY[2])
            continue
        f = BY_NAME[c["cause"]]
        if c["cause"] == "threads":
            how = ("threads race: it differs between runs at the recorded "
                   f"{recorded} threads and is identical with one" if c.get("race") else
                   f"deterministic at the recorded {recorded} threads, but not what one "
                   "thread gives" if c.get("race") is False else
                   f"identical with one thread, not with the recorded {recorded}")
            parts.append(f"on {f.cause} ({where} differ{_s(c['places'])}: {how})")
        else:
            alone = "" if len(causes) > 1 else f"; identical with {f.control}"
            parts.append(f"on {f.cause} ({where} differ{_s(c['places'])} only when "
                         f"{f.free}{alone})")
        fixes.append(f.fix)
    if parts:
        return f"{s} depends " + " and ".join(parts), fixes
    broken = broken_control(runs)
    if broken is not None:
        finding["kind"], finding["inconclusive"] = "inconclusive", broken["line"]
        return (f"{s} differs; {broken['line']}", [
            f"look at run {broken['run']}'s log (`repro logs {broken['run']}`), or diagnose "
            "again once the job runs with that control"])
    if not finding["noise_here"]:
        finding["kind"] = "changed"
        moved = sorted({c["fact"] for r in runs.plain
                        for c in (r.verdict or {}).get("environment", [])})
        why = (f"what changed since: {', '.join(moved)}" if moved else
               "nothing recorded about the environment changed (image, packages, CPU, GPU, "
               "driver): the original ran under conditions these replays do not recreate")
        return (f"{s} is the same in every replay here but not what the original produced: "
                f"a change, not noise; {why}", [
                    "replay where the original ran, or pin what changed (image, packages, "
                    "hardware)"])
    finding["kind"] = "rare"
    return (f"{s} differed between plain replays but in no experiment: the cause is rare or "
            "outside repro's controls; diagnose again with more --replays", [])


def describe(found: Iterable[str]) -> str:
    """Places, for people: "line 1", "lines 2-6", "12 values", "the file", "its name"."""
    found = list(found)
    if "name" in found:
        rest = [p for p in found if p != "name"]
        return f"its name and {describe(rest)}" if rest else "its name only (the bytes agree)"
    if not found or "*" in found:
        return "the file"
    if found == ["value"]:
        return "the value"
    if found == ["missing"]:
        return "its presence"
    lines = [int(p[5:]) for p in found if re.fullmatch(r"line \d+", p)]
    if len(lines) == len(found):
        spans, start = [], lines[0]
        for a, b in zip(lines, lines[1:] + [None], strict=True):
            if b != a + 1:
                spans.append(f"{start}" if start == a else f"{start}-{a}")
                start = b if b is not None else 0
        word = "line" if len(lines) == 1 else "lines"
        return f"{word} {', '.join(spans[:4])}" + (" ..." if len(spans) > 4 else "")
    elements = [p for p in found if "[" in p and p.endswith("]") and not p.startswith("$")]
    if len(elements) == len(found):
        return f"{len(found)} value{'s' if len(found) != 1 else ''}"
    shown = ", ".join(found[:3])
    return shown + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


def _s(found: list[str]) -> str:
    """The verb's ending: "line 1 differs", "lines 2-6 differ"."""
    return "s" if len(found) == 1 else ""


def _place_order(p: str) -> tuple[int, str]:
    m = re.fullmatch(r"line (\d+)", p) or re.fullmatch(r"[^\[]*\[(\d+)\]", p)
    return (int(m.group(1)), p) if m else (0, p)


# -- running the experiments ------------------------------------------------------------------

@dataclass
class Lab:
    original: RunRecord
    store: Store
    engine: Engine
    say: Callable[[str], None]
    grants: Grants | None = None
    at: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)

    def replay(self, names: list[str], label: str, experiment: str) -> RunRecord:
        from .replay import replay

        n = len(self.runs) + 1
        self.say(f"[{n}] {label} ...")
        began = time.monotonic()
        rec = replay(self.original, self.store, self.engine, Hooks(), grants=self.grants,
                     vary=(lambda r: controlled(r, names, self.at)) if names else None,
                     note=f"repro diagnose {self.original.id}: {label}",
                     diagnosis_of=self.original.id)
        took = time.monotonic() - began
        if rec.status == RunStatus.INTERRUPTED:
            raise DiagnosisInterrupted(f"diagnosis of run {self.original.id} interrupted "
                                       f"during {label} (run {rec.id}); nothing was stored")
        result = (rec.verdict or {}).get("result", "differs")
        self.runs.append({"run": rec.id, "experiment": experiment, "label": label,
                          "controls": list(names), "status": str(rec.status),
                          "versus_original": result, "seconds": round(took, 2)})
        self.say(f"[{n}] {label}: run {rec.id} {rec.status}, {result} vs the original")
        return rec


def _experiments(lab: Lab, runs: Runs, factors: list[Factor],
                 diff: Differences) -> list[dict[str, Any]]:
    """Every control on (twice), each off in turn, the recorded threads once more when they
    are implicated: the replays go into ``runs``, the experiments are returned."""
    original, names = lab.original, [f.name for f in factors]
    experiments: list[dict[str, Any]] = []
    runs.controls = names
    on = ", ".join(BY_NAME[n].control for n in names)
    runs.pair = [lab.replay(names, f"all controls on ({i + 1} of 2)", "controlled")
                 for i in range(2)]
    controlled = {"name": "controlled", "title": f"every control on: {on}",
                  "controls": names, "runs": [r.id for r in runs.pair],
                  "agree": None if broken_control(runs) else not diff(*runs.pair)}
    experiments.append(controlled)
    ran = (runs.plain[0].status, runs.plain[0].exit_code)
    for f in factors:
        rest = [n for n in names if n != f.name]
        rec = lab.replay(rest, f"{f.cause} free, every other control on",
                         f"free:{f.name}")
        runs.released[f.name] = rec
        experiments.append({"name": f"free:{f.name}", "factor": f.name,
                            "title": f"{f.cause} free ({f.free}), every other control on",
                            "controls": rest, "runs": [rec.id],
                            "failed": None if (rec.status, rec.exit_code) == ran else
                            f"{rec.status} (exit {rec.exit_code})" + (
                                f": {rec.reason}" if rec.reason else "")})
    broken = broken_control(runs)  # which control broke it shows once each was let go
    if broken is not None:
        controlled["failed"] = broken["line"]
    implicated = any(c["cause"] == "threads" for f in analyse(original, runs, diff)[
        "findings"] for c in f.get("causes", []))
    if implicated:
        rest = [n for n in names if n != "threads"]
        runs.threads_again = lab.replay(rest, "the recorded threads again", "threads-again")
        experiments.append({"name": "threads-again", "factor": "threads",
                            "title": "the recorded thread count again: a race or the "
                                     "count", "controls": rest,
                            "runs": [runs.threads_again.id]})
    return experiments


def started_epoch(record: RunRecord) -> float:
    stamp = record.started_at or record.created_at
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def diagnose(original: RunRecord, store: Store, engine: Engine, say: Callable[[str], None],
             replays: int = 2, grants: Grants | None = None) -> dict[str, Any]:
    """Run the experiments for ``original`` and store the diagnosis with it."""
    from .replay import redacted, shown_change

    if original.replay_of:
        raise UsageError(f"run {original.id} is a replay of {original.replay_of}: diagnose "
                         "the original run")
    if not original.status.terminal:
        raise UsageError(f"run {original.id} is {original.status}: diagnose it once it ends")
    began = time.monotonic()
    factors, skipped = applicable(original)
    names = [f.name for f in factors]
    lab = Lab(original, store, engine, say, grants, started_epoch(original))
    diff = differences(store.artifacts.local_path, original)
    runs = Runs(plain=[lab.replay([], f"plain replay {i + 1} of {replays}", "plain")
                       for i in range(replays)])
    first = analyse(original, runs, diff)["findings"]
    plural = "s" if replays > 1 else ""
    experiments: list[dict[str, Any]] = [{"name": "plain", "title": f"{replays} plain replay"
                                          f"{plural}", "runs": [r.id for r in runs.plain]}]
    trouble = [f for f in first if f["subject"] != OUTCOME]
    if trouble and not any(f["subject"] == OUTCOME for f in first) and names:
        experiments += _experiments(lab, runs, factors, diff)
    analysis = analyse(original, runs, diff)
    findings = analysis["findings"]
    environment = (runs.plain[0].verdict or {}).get("environment", []) if runs.plain else []
    result = ("reproduces" if not findings else "fails" if any(
        f["subject"] == OUTCOME for f in findings) else "nondeterministic" if any(
        f["causes"] for f in findings) else "inconclusive" if any(
        f.get("kind") == "inconclusive" for f in findings) else "nondeterministic" if any(
        f["noise_here"] for f in findings) else "changed")
    total = time.monotonic() - began
    one = sum(r["seconds"] for r in lab.runs[:replays]) / max(1, len(lab.runs[:replays]))
    doc = {
        "run": original.id, "result": result, "created_at": utc_now(),
        "host": runs.plain[0].host if runs.plain else None,
        "user": runs.plain[0].user if runs.plain else None,
        "replays": replays, "experiments": experiments, "runs": lab.runs,
        "skipped": skipped, "causes": analysis["causes"], "findings": findings,
        "environment": [{**c, "shown": shown_change(c)} for c in environment],
        "cost": {"replays": len(lab.runs), "seconds": round(total, 2),
                 "one_replay_s": round(one, 2),
                 "multiple": round(total / one, 2) if one else None},
    }
    # the secrets its replays were given, out of every line it quotes of what jobs wrote
    wanted = {*original.resolved.secrets, *(grants.secrets if grants else ())}
    doc = redacted(doc, Redactor([os.environ[n] for n in sorted(wanted) if n in os.environ]))
    store.runs.add_diagnosis(original.id, doc)
    return doc

