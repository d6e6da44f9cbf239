"""Parameter importance: how much of a metric's variance each parameter explains on its own.

Method (stated in every output): a one-way ANOVA per parameter over the selected runs, the
first-order (main-effect) term of a functional ANOVA decomposition, estimated directly from the
runs rather than through a surrogate model. Numeric parameters with more than
``MAX_LEVELS`` distinct values are cut into quantile bins; categorical and boolean parameters
use their values as groups. The score is epsilon-squared, the bias-corrected share of variance
explained (eta-squared minus what chance grouping explains), clipped at 0; ``1 - sum`` of the
scores is what main effects do not explain (interactions and noise). For numeric parameters
the Spearman rank correlation gives the direction. On a full grid this is exactly the
main-effect ANOVA; on random search it is an estimate, better with more runs.

Pairwise interactions (the second-order terms): for each pair of parameters, the variance
the pair's cells explain beyond both main effects, SS(cells) - SS(A) - SS(B), as a share of
the total (exact on a full grid, an estimate otherwise). When the cells hold repeated runs the
score is bias-corrected against the within-cell variance (noise) and the pair is reported
only when an F-test puts it beyond chance (p < 0.01 over all pairs together, Bonferroni);
when every cell holds one run,
interaction and noise cannot be told apart and the pair is marked ``replicated: false``.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from ..errors import UsageError
from ..record import RunRecord, RunStatus

MAX_LEVELS = 8
MAX_INTERACTIONS = 5
SAMPLE_RUNS = 20_000  # beyond this many runs, estimate on a seeded uniform sample of them
MAX_POINTS = 2_000  # (param value, metric) points per param returned for plotting
INTERACTION_P = 0.01  # family-wise: a replicated pair is reported when F-test p < this / pairs
METHOD = ("one-way ANOVA per parameter (functional-ANOVA main effects, estimated from the runs "
          "directly); score = bias-corrected variance share (epsilon-squared), numeric params "
          f"with > {MAX_LEVELS} values binned by quantiles; direction = Spearman rank "
          "correlation")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _groups(values: list[Any]) -> tuple[list[str], str]:
    """A group label per run, and the kind of the parameter."""
    present = [v for v in values if v is not None]
    if present and all(_is_num(v) for v in present):
        distinct = sorted(set(present))
        if len(distinct) <= MAX_LEVELS:
            return [("missing" if v is None else repr(v)) for v in values], "numeric"
        cuts = [distinct[min(len(distinct) - 1, int(len(distinct) * q / MAX_LEVELS))]
                for q in range(1, MAX_LEVELS)]
        return [("missing" if v is None else f"bin{bisect.bisect_right(cuts, v)}")
                for v in values], "numeric (binned)"
    return [("missing" if v is None else str(v)) for v in values], "categorical"


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


Sample = tuple[dict[str, Any], float]  # one succeeded run: its params, its metric value


def importance(records: list[RunRecord], metric: str) -> dict[str, Any]:
    """Importance over records (the store reads samples straight from its indexed tables:
    ``RunStore.importance_samples``, no record parsing)."""
    return importance_of(metric, [(r.params, r.metrics[metric]) for r in records
                                  if r.status == RunStatus.SUCCEEDED and metric in r.metrics])


def importance_of(metric: str, samples: list[Sample], total: int | None = None
                  ) -> dict[str, Any]:
    """``total``: how many runs ``samples`` were drawn from, when it is a sample."""
    if len(samples) < 3:
        raise UsageError(f"importance of {metric!r} needs at least 3 succeeded runs that "
                         f"report it; found {len(samples)} (check --where and the metric name)")
    runs = [p for p, _ in samples]
    y = [v for _, v in samples]
    n = len(y)
    mean = sum(y) / n
    centred = [v - mean for v in y]  # group sums of these give sums of squares directly
    ss_total = sum(v * v for v in centred)
    names = sorted({p for r in runs for p in r})
    params: list[dict[str, Any]] = []
    codes: dict[str, tuple[list[int], float]] = {}  # per param: group code per run, SS
    for name in names:
        values = [r.get(name) for r in runs]
        if len({repr(v) for v in values}) < 2:
            continue  # constant over the selection: explains nothing here
        labels, kind = _groups(values)
        index: dict[str, int] = {}
        code = [index.setdefault(label, len(index)) for label in labels]
        k = len(index)
        count, sums = _cell_sums(code, k, centred)
        ss_between = _ss(count, sums)
        codes[name] = (code, ss_between)
        ms_within = (ss_total - ss_between) / (n - k) if n > k else 0.0
        eta2 = ss_between / ss_total if ss_total > 0 else 0.0
        eps2 = max(0.0, (ss_between - (k - 1) * ms_within) / ss_total) if ss_total > 0 else 0.0
        numeric = [(float(v), m) for v, m in zip(values, y, strict=True)
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        rho = spearman([float(v) for v, _ in numeric], [m for _, m in numeric]) \
            if kind.startswith("numeric") else None
        params.append({
            "name": name, "kind": kind, "levels": k, "importance": round(eps2, 6),
            "eta_squared": round(eta2, 6), "spearman": None if rho is None else round(rho, 4),
            "groups": {label: {"n": count[i], "mean": mean + sums[i] / count[i]}
                       for label, i in sorted(index.items())},
            "points": [[v, m] for v, m in zip(values[:MAX_POINTS], y, strict=False)],
        })
    params.sort(key=lambda p: (-float(p["importance"]), str(p["name"])))
    explained = min(1.0, sum(float(p["importance"]) for p in params))
    sampled = total is not None and total > n
    method = METHOD + (f"; estimated on a seeded uniform sample of {n:,} of the {total:,} "
                       "matching runs" if sampled else "")
    return {"metric": metric, "runs": n, "sampled_from": total if sampled else None,
            "method": method, "metric_mean": mean,
            "metric_std": math.sqrt(ss_total / n), "params": params,
            "unexplained": round(1 - explained, 6),
            "interactions": interactions(centred, params, codes, ss_total)}


def _cell_sums(code: list[int], size: int, centred: list[float]
               ) -> tuple[list[int], list[float]]:
    """Runs and sum of centred metric values per group code."""
    count, total = [0] * size, [0.0] * size
    for c, v in zip(code, centred, strict=True):
        count[c] += 1
        total[c] += v
    return count, total


def _ss(count: list[int], total: list[float]) -> float:
    """Between-group sum of squares from per-group counts and centred sums."""
    return sum(t * t / c for t, c in zip(total, count, strict=True) if c)


def interactions(centred: list[float], params: list[dict[str, Any]],
                 codes: dict[str, tuple[list[int], float]], ss_total: float,
                 top: int = MAX_INTERACTIONS) -> list[dict[str, Any]]:
    """The strongest pairwise interaction terms (see the module docstring). ``codes``: per
    parameter, its group number for each run and its main-effect sum of squares."""
    if ss_total <= 0 or len(params) < 2:
        return []
    n = len(centred)
    found = []
    pairs = len(params) * (len(params) - 1) // 2
    for i, a in enumerate(params):
        for b in params[i + 1:]:
            (ca, ss_a), (cb, ss_b) = codes[a["name"]], codes[b["name"]]
            kb = b["levels"]
            count, total = _cell_sums([ga * kb + gb for ga, gb in zip(ca, cb, strict=True)],
                                      a["levels"] * kb, centred)
            ss_cells = _ss(count, total)
            cells = sum(1 for c in count if c)
            ss_ab = max(0.0, ss_cells - ss_a - ss_b)
            df_ab = (a["levels"] - 1) * (b["levels"] - 1)
            replicated = n > cells
            p_value = None
            if replicated:
                ms_within = (ss_total - ss_cells) / (n - cells)
                score = max(0.0, (ss_ab - df_ab * ms_within) / ss_total)
                if df_ab > 0:
                    p_value = f_test_p(ss_ab / df_ab, ms_within, df_ab, n - cells)
                    if p_value > INTERACTION_P / pairs:  # Bonferroni over all pairs
                        continue  # not told apart from chance cell-to-cell variation
            else:
                score = ss_ab / ss_total
            found.append({"params": sorted([a["name"], b["name"]]),
                          "importance": round(score, 6),
                          "eta_squared": round(ss_ab / ss_total, 6), "cells": cells,
                          "replicated": replicated,
                          "p": None if p_value is None else float(f"{p_value:.3g}")})
    found.sort(key=lambda x: (-x["importance"], x["params"]))
    return [f for f in found if f["importance"] > 0][:top]


def f_test_p(ms_effect: float, ms_error: float, d1: int, d2: int) -> float:
    """Upper-tail p of F = ms_effect / ms_error with (d1, d2) degrees of freedom, by
    Paulson's normal approximation (good to a few percent in p for d2 >= 3; no scipy)."""
    if ms_error <= 0:
        return 0.0 if ms_effect > 0 else 1.0
    f = ms_effect / ms_error
    if f <= 0:
        return 1.0
    a, b = 2 / (9 * d1), 2 / (9 * max(d2, 1))
    cube = f ** (1 / 3)
    z = ((1 - b) * cube - (1 - a)) / math.sqrt(b * cube * cube + a)
    return 0.5 * math.erfc(z / math.sqrt(2))
