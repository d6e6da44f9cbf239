"""Tolerances a replay may be judged with: ``--tolerance metrics.NAME=X`` for a metric,
``outputs.PATH=X`` or ``outputs.PATH=Nulp`` for an array output, parsed here and held
against what ``content.py`` measured inside a differing output. A result within tolerance is
never called identical."""

from __future__ import annotations

import math
from typing import Any

from .errors import UsageError

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
