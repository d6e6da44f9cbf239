"""After the container exits: outputs into the artifact store (hashed while copied, once),
and metrics from ``metrics.json`` and the helper's ``log_metric`` series.

Everything here reads what a job wrote, so it is hostile input: files are opened without
following links or blocking, regular files only, under size, count and depth caps
(``untrusted.py``); names with control characters or that are not UTF-8 are skipped with the
reason; a bad line or file is a warning, never an exception that could leave a run running.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import settings
from .engine import CONTAINER_HOSTNAME
from .record import FileRef
from .store.artifacts import TooLarge
from .store.protocol import Artifacts
from .untrusted import (
    META_FILE_LIMIT,
    Untrusted,
    loads,
    name_problem,
    read_file,
    read_json,
)

MAX_DIR_DEPTH = 64  # folders below /repro/outputs that are walked
PARAM_TEXT_LIMIT = 1000  # characters of a logged string param


@lru_cache(maxsize=64)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` spans folders, ``*`` and ``?`` stay inside one; matched against POSIX paths."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)  # a name may hold a newline


def wanted(rel: str, globs: list[str]) -> bool:
    return any(glob_regex(g).match(rel) for g in globs)


# -- outputs equal up to their names ----------------------------------------------------------

# what varies in the names real jobs give their files: the container's hostname (Docker's
# default was the container id's first 12 hex digits: older records; repro's fixed one
# since) and runs of digits (times, dates, process ids)
_RANDOM_HOST = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{12}(?![0-9A-Za-z])")
_FIXED_HOST = re.compile(rf"(?<![0-9A-Za-z]){CONTAINER_HOSTNAME}(?![0-9A-Za-z])")
_DIGITS = re.compile(r"\d+")


def normalised(path: str) -> str:
    """``path`` with what names carry of the time, the date and the host left out:
    ``events.out.tfevents.1733338800.repro`` and Hydra's ``outputs/2026-12-04/21-00-07/x``
    normalise to the same name as the next run's (and an older record's random host)."""
    return _DIGITS.sub("#", _FIXED_HOST.sub("<host>", _RANDOM_HOST.sub("<host>", path)))


def name_pattern(path: str) -> str:
    """A glob for ``path`` and the names the next runs give it (for ``outputs.exclude``)."""
    return re.sub(r"\d+(?:[-_.:T]\d+)*", "*", _RANDOM_HOST.sub("*", path))


def pair_renamed(missing: Iterable[str], extra: Iterable[str]) -> dict[str, str]:
    """Outputs of one run missing from the other, paired with the other's new names: each
    missing path with the one extra path of the same normalised name, where exactly one on
    each side has it (two candidates are never guessed between). original -> replay."""
    mine: dict[str, list[str]] = {}
    theirs: dict[str, list[str]] = {}
    for p in missing:
        mine.setdefault(normalised(p), []).append(p)
    for p in extra:
        theirs.setdefault(normalised(p), []).append(p)
    return {a[0]: theirs[k][0] for k, a in sorted(mine.items())
            if len(a) == 1 and len(theirs.get(k, ())) == 1}


@dataclass
class Collected:
    """What ``collect`` found: stored files, skipped ones (path -> why), problems that fail
    the run (a limit was hit: the record would be incomplete) and warnings."""

    stored: dict[str, FileRef] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


DEFAULT_GLOBS = ["**"]
EXCLUDED = "excluded by outputs.exclude"


def collect(outputs_dir: Path, globs: list[str], artifacts: Artifacts,
            limit: int | None = None, total: int | None = None,
            count: int | None = None, exclude: list[str] | None = None,
            untouched: Callable[[str, os.stat_result], bool] | None = None,
            ignore: Iterable[str] = ()) -> Collected:
    """Every regular file under ``outputs_dir`` matching ``globs`` into the artifact store.

    In a working folder that held the project (``untouched`` says which files the job left
    as they were laid out), the default globs take only what the job created or changed;
    declared globs take every file they match. Files matching ``exclude`` are listed as
    excluded, not stored; ``ignore`` names input mount points, which are no outputs.
    Links are never followed nor stored (they could point anywhere on the host); FIFOs and
    devices are skipped, never opened; names that are not printable UTF-8 are skipped; at
    most ``count`` files, ``limit`` bytes each and ``total`` bytes together are stored, and
    hitting a cap is a problem that fails the run."""
    limit = settings.output_limit() if limit is None else limit
    total = settings.run_output_limit() if total is None else total
    count = settings.max_outputs() if count is None else count
    if globs != DEFAULT_GLOBS:
        untouched = None  # declared: every file they match, changed or not
    ignored = set(ignore)
    found = Collected()
    used = 0
    for rel, st, why in _walk(outputs_dir, found):
        if rel in ignored or not wanted(rel, globs):
            continue
        if untouched is not None and untouched(rel, st):
            continue  # the project's own file, as the job found it
        if len(found.stored) + len(found.skipped) >= count:
            found.problems.append(f"it wrote more than {count} output files; only the first "
                                  f"{count} are recorded (raise REPRO_MAX_OUTPUTS or write "
                                  "fewer files)")
            break
        if exclude and wanted(rel, exclude):
            found.skipped[_shown(rel)] = EXCLUDED
            continue
        if why:
            found.skipped[_shown(rel)] = why
            continue
        if st.st_size >= 1 << 20 and st.st_blocks * 512 < st.st_size // 2:
            found.warnings.append(f"output {_shown(rel)} is sparse ({st.st_size} bytes, "
                                  f"{st.st_blocks * 512} allocated); it is stored in full")
        cap = min(limit, total - used)
        try:
            fd = os.open(outputs_dir / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            found.skipped[rel] = f"unreadable: {e.strerror}"
            continue
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                found.skipped[rel] = "not a regular file"
                continue
            try:
                put = artifacts.put(f, limit=cap, name=f"output {rel}")
            except TooLarge:
                if cap == limit:
                    found.skipped[rel] = f"larger than the output limit of {limit} bytes " \
                        "(REPRO_OUTPUT_LIMIT)"
                    found.problems.append(f"output {rel} is larger than the output limit "
                                          f"({limit} bytes) and was not stored; raise "
                                          "REPRO_OUTPUT_LIMIT or write less")
                else:
                    found.skipped[rel] = "over the run's total output limit " \
                        f"of {total} bytes (REPRO_RUN_OUTPUT_LIMIT)"
                    found.problems.append(f"its outputs are larger than the run's total limit "
                                          f"({total} bytes); {rel} and later files were not "
                                          "stored: raise REPRO_RUN_OUTPUT_LIMIT or write less")
                continue
        used += put.size
        found.stored[rel] = FileRef(sha256=put.sha256, size=put.size)
    return found


def _walk(top: Path, found: Collected) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """(relative path, lstat, why it is skipped or None) of every file and link below
    ``top``, sorted, without following links, at most MAX_DIR_DEPTH folders deep."""
    stack: list[tuple[Path, str, int]] = [(top, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as e:
            found.warnings.append(f"output folder {_shown(prefix) or '.'} unreadable: "
                                  f"{e.strerror}")
            continue
        subdirs = []
        for entry in reversed(entries):
            rel = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            problem = _name_problem(entry.name)
            if stat.S_ISDIR(st.st_mode):
                if problem:
                    found.skipped[_shown(rel)] = f"folder skipped: {problem}"
                elif depth + 1 >= MAX_DIR_DEPTH:
                    found.skipped[_shown(rel)] = f"folder deeper than {MAX_DIR_DEPTH} levels " \
                        "(not walked)"
                else:
                    subdirs.append((Path(entry.path), rel + "/", depth + 1))
                continue
            if stat.S_ISLNK(st.st_mode):
                yield rel, st, "symlink (not followed)"
            elif problem:
                yield rel, st, problem
            elif not stat.S_ISREG(st.st_mode):
                yield rel, st, "not a regular file"
            else:
                yield rel, st, None
        stack.extend(reversed(subdirs))


def _name_problem(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    return name_problem(name)


def _shown(rel: str) -> str:
    """A path as a record key even when it is not valid UTF-8 or holds control characters."""
    text = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _jsonl_points(path: Path, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """Valid ``{"name": ..., "value": ...}`` lines of a helper file; bad lines are counted
    in one warning. The file is read capped, without following a link."""
    try:
        data = read_file(path, META_FILE_LIMIT)
    except Untrusted as e:
        warnings.append(f"{e}; ignored")
        return
    if data is None:
        return
    bad = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            item = loads(line, path.name, max_depth=4)
        except Untrusted:
            bad += 1
            continue
        if not isinstance(item, dict) or "value" not in item or not isinstance(
                item.get("name"), str) or name_problem(item["name"]):
            bad += 1
            continue
        yield item
    if bad:
        warnings.append(f"{path.name}: {bad} line(s) without a valid name and value; ignored")


def read_series(meta_dir: Path, warnings: list[str] | None = None) -> list[tuple[str, int, float]]:
    """Points written by ``repro.log_metric`` (name, step, value); steps default to the
    point's position in its series."""
    points: list[tuple[str, int, float]] = []
    counters: dict[str, int] = {}
    for item in _jsonl_points(meta_dir / "metrics.jsonl", [] if warnings is None else warnings):
        name, value, step = item["name"], item["value"], item.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or not -2**62 < step < 2**62:
            step = counters.get(name, 0)
        counters[name] = step + 1
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
                value):
            points.append((name, step, float(value)))
    return points


SCRAPE_LIMIT = 64 << 20  # bytes of a log scanned for metrics
SCRAPE_POINTS = 100_000  # points one metric may take from a log


SPLIT_LIMIT = 32  # characters of a split name a log line gives a metric


def scraped_name(name: str, match: re.Match[str]) -> str | None:
    """The metric a match of ``metrics_from_log``'s regex for ``name`` is a point of:
    ``SPLIT/name`` when the regex has a group ``split`` that matched (``train loss 0.3 val
    loss 0.5`` gives ``train/loss`` and ``val/loss``, never one series mixing both), else
    ``name``; None for a split that is no name (control characters, too long)."""
    split = match.groupdict().get("split")
    if not split:
        return name
    split = split.strip().lower()
    if not split or len(split) > SPLIT_LIMIT or name_problem(split) or "/" in split:
        return None
    return f"{split}/{name}"


def scraped_step(match: re.Match[str], position: int) -> int:
    """A match's step: its group ``step`` when the regex has one and it is a number (``step
    (?P<step>\\d+) loss (?P<value>\\S+)``: a resumed job's steps go on from its checkpoint),
    else ``position``, the count of the series' points before it."""
    raw = match.groupdict().get("step")
    if raw is not None and re.fullmatch(r"[0-9]{1,18}", raw):
        return int(raw)
    return position


def scrape_metrics(log: Path, patterns: dict[str, str],
                   warnings: list[str]) -> list[tuple[str, int, float]]:
    """``metrics_from_log``: every match of each metric's regex in the job's output is a point
    (its group ``value``), numbered in order per metric unless a ``step`` group says its step
    (``scraped_step``; a ``split`` group names the series: ``scraped_name``), so a script
    that only prints its loss still has a learning curve."""
    if not patterns:
        return []
    try:
        data = read_file(log, SCRAPE_LIMIT)
    except Untrusted as e:
        warnings.append(f"metrics_from_log: {e}")
        return []
    text = (data or b"")[:SCRAPE_LIMIT].decode("utf-8", "replace")
    points: list[tuple[str, int, float]] = []
    for name, pattern in patterns.items():
        steps: dict[str, int] = {}
        taken = 0
        for m in re.finditer(pattern, text, re.MULTILINE):
            try:
                value = float(m.group("value"))
            except (TypeError, ValueError, IndexError):
                continue
            series = scraped_name(name, m)
            if series is None or not math.isfinite(value):
                continue
            step = scraped_step(m, steps.get(series, 0))
            points.append((series, step, value))
            steps[series] = step + 1
            taken += 1
            if taken >= SCRAPE_POINTS:
                warnings.append(f"metrics_from_log: {name} kept its first {SCRAPE_POINTS} "
                                "points")
                break
        if not taken:
            warnings.append(f"metrics_from_log: {name}: no line of the output matched")
    return points


def final_metrics(series: list[tuple[str, int, float]], metrics_file: Path | None,
                  warnings: list[str]) -> dict[str, float]:
    """Last point of each series, overridden by ``metrics_file`` (the outputs' metrics.json:
    flat or nested numbers)."""
    metrics: dict[str, float] = {}
    for name, _step, value in sorted(series, key=lambda p: (p[0], p[1])):
        metrics[name] = value
    if metrics_file is None:
        return metrics
    try:
        data = read_json(metrics_file)
    except Untrusted as e:
        warnings.append(f"{e}; ignored")
        return metrics
    if data is None:
        return metrics
    if isinstance(data, dict):
        metrics.update(_flatten(data, "", warnings))
    else:
        warnings.append("metrics.json is not an object of numbers; ignored")
    return metrics


def _flatten(data: dict, prefix: str, warnings: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + ".", warnings))
        elif problem := name_problem(name):
            warnings.append(f"metrics.json: {_shown(name)[:60]!r}: {problem}; ignored")
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
                value):
            out[name] = float(value)
        else:
            warnings.append(f"metrics.json: {name} is not a finite number; ignored")
    return out


def read_logged_params(meta_dir: Path, declared: dict, warnings: list[str]) -> dict:
    """Params written by ``repro.log_param`` (numbers, booleans, short strings); the spec's
    declared params win."""
    logged: dict = {}
    for item in _jsonl_points(meta_dir / "params.jsonl", warnings):
        name, value = item["name"], item["value"]
        if name in declared:
            if declared[name] != value:
                warnings.append(f"log_param({name!r}) ignored: the spec declares {name}")
            continue
        if isinstance(value, float) and not math.isfinite(value) or not (
                value is None or isinstance(value, bool | int | float)
                or isinstance(value, str) and len(value) <= PARAM_TEXT_LIMIT):
            warnings.append(f"log_param({name!r}) ignored: not a number, boolean or string of "
                            f"at most {PARAM_TEXT_LIMIT} characters")
            continue
        logged[name] = value
    return logged
