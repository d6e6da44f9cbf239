"""The reasoning of `repro diagnose`, pure: records and a ``differences`` function in, one
finding per subject (an output, a metric, the outcome) and each cause once with its subjects
under it out. The factors repro can control are defined here; ``diagnose.py`` runs the
replays that hold them on and let them go, and hands the runs to ``analyse``. Unit-tested
without an engine."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .content import places
from .outputs import name_pattern, pair_renamed
from .record import RunRecord

WHOLE = frozenset({"*"})  # the file differs as a whole (not compared by place)
OUTCOME = "(outcome)"  # how the run ended, as a subject of the diagnosis


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
        for text in r.environment.container.determinism_warnings:
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
        if rec.verdict is None:
            continue
        for d in rec.verdict.outputs.differ:
            if d.path == subject and (d.content or {}).get("summary"):
                return str((d.content or {})["summary"])
        for m in rec.verdict.metrics:
            if f"metric {m.name}" == subject and m.delta:
                return f"{m.original!r} -> {m.replay!r} (delta {m.delta:.3g})"
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
        moved = sorted({c.fact for r in runs.plain
                        for c in (r.verdict.environment if r.verdict else [])})
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


