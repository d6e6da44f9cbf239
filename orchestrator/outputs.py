"""After the container exits: outputs into the artifact store (hashed while copied, once),
and metrics from ``metrics.json`` and the helper's ``log_metric`` series."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import StoreError
from .record import FileRef
from .store.artifacts import ArtifactStore

TOO_LARGE = "larger than the output limit"


def output_limit() -> int:
    """REPRO_OUTPUT_LIMIT (bytes, or like '2g'); default 64 GiB per output file."""
    from .errors import UsageError
    from .spec import parse_size

    raw = os.environ.get("REPRO_OUTPUT_LIMIT", str(64 << 30))
    try:
        return parse_size(raw.strip(), "REPRO_OUTPUT_LIMIT")
    except ValueError as e:
        raise UsageError(f"{e}") from None


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
    return re.compile("".join(out) + r"\Z")


def wanted(rel: str, globs: list[str]) -> bool:
    return any(glob_regex(g).match(rel) for g in globs)


def collect(outputs_dir: Path, globs: list[str], artifacts: ArtifactStore,
            limit: int | None = None) -> tuple[dict[str, FileRef], dict[str, str]]:
    """Every regular file under ``outputs_dir`` matching ``globs`` -> (stored, skipped).

    Symlinks are never followed nor stored (they could point anywhere on the host).
    """
    limit = output_limit() if limit is None else limit
    stored: dict[str, FileRef] = {}
    skipped: dict[str, str] = {}
    for root, dirs, files in os.walk(outputs_dir):
        dirs.sort()
        for name in sorted(dirs):
            p = Path(root, name)
            if p.is_symlink():
                skipped[p.relative_to(outputs_dir).as_posix()] = "symlink (not followed)"
        for name in sorted(files):
            p = Path(root, name)
            rel = p.relative_to(outputs_dir).as_posix()
            if not wanted(rel, globs):
                continue
            if p.is_symlink():
                skipped[rel] = "symlink (not followed)"
                continue
            if not p.is_file():
                skipped[rel] = "not a regular file"
                continue
            try:
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                skipped[rel] = f"unreadable: {e.strerror}"
                continue
            with os.fdopen(fd, "rb") as f:
                try:
                    sha, size = artifacts.put_stream(f, limit=limit, name=f"output {rel}")
                except StoreError as e:
                    if "larger than the limit" in str(e):
                        skipped[rel] = f"{TOO_LARGE} of {limit} bytes (REPRO_OUTPUT_LIMIT)"
                        continue
                    raise
            stored[rel] = FileRef(sha256=sha, size=size)
    return stored, skipped


def _jsonl_points(path: Path) -> Iterator[dict[str, Any]]:
    """Valid ``{"name": ..., "value": ...}`` lines of a helper file; others are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            item = json.loads(line)
            if "value" not in item:
                continue
            item["name"] = str(item["name"])
        except (ValueError, KeyError, TypeError):
            continue
        yield item


def read_series(meta_dir: Path) -> list[tuple[str, int, float]]:
    """Points written by ``repro.log_metric`` (name, step, value); steps default to the
    point's position in its series."""
    points: list[tuple[str, int, float]] = []
    counters: dict[str, int] = {}
    for item in _jsonl_points(meta_dir / "metrics.jsonl"):
        name, value, step = item["name"], item["value"], item.get("step")
        if not isinstance(step, int):
            step = counters.get(name, 0)
        counters[name] = step + 1
        if isinstance(value, int | float) and math.isfinite(value):
            points.append((name, step, float(value)))
    return points


def final_metrics(series: list[tuple[str, int, float]], outputs_dir: Path,
                  warnings: list[str]) -> dict[str, float]:
    """Last point of each series, overridden by ``metrics.json`` (flat or nested numbers)."""
    metrics: dict[str, float] = {}
    for name, _step, value in sorted(series, key=lambda p: (p[0], p[1])):
        metrics[name] = value
    path = outputs_dir / "metrics.json"
    if path.is_file() and not path.is_symlink():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            warnings.append(f"metrics.json is not valid JSON ({e}); ignored")
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
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
                value):
            out[name] = float(value)
        else:
            warnings.append(f"metrics.json: {name} is not a finite number; ignored")
    return out


def read_logged_params(meta_dir: Path, declared: dict, warnings: list[str]) -> dict:
    """Params written by ``repro.log_param``; the spec's declared params win."""
    logged: dict = {}
    for item in _jsonl_points(meta_dir / "params.jsonl"):
        name, value = item["name"], item["value"]
        if name in declared:
            if declared[name] != value:
                warnings.append(f"log_param({name!r}) ignored: the spec declares {name}")
            continue
        logged[name] = value
    return logged
