"""Repeated runs as one figure each (pure): mean and 95 % confidence interval over seeds.

A comparison or a sweep whose axes include ``seed`` ran every other combination once per
seed.  :func:`aggregate` turns its points table (``points.csv``) into one row per
combination of the other axes::

    <axes...>, runs, left_out, fidelity_passed_total, fidelity_rows_total,
    cpu_trusted_runs, <metric>_mean, <metric>_ci95, <metric>_n, ...

``runs`` counts the complete points of the group (failed and unfinished ones are left out
and counted in ``left_out``); ``<metric>_n`` the runs with a value for that metric;
``<metric>_ci95`` is the half-width of the two-sided 95 % Student-t interval,
t(0.975, n-1) * sd / sqrt(n) (NaN below two values).  Booleans such as ``cpu_trusted``
count as 1/0, so their mean is the share of runs that were true.  The ``fidelity_*_total``
columns add up the distinct fidelity checks of the group (runs on one network share one),
and :func:`verdict` says the same of any set of runs in one line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEED_AXIS = "seed"
COMPLETE = "complete"
#: Columns of a points table that are bookkeeping, never metrics.
NOT_METRICS = ("point", "dir", "status", "seed", "fidelity_check")
#: The bookkeeping columns of an aggregate row, after the axes.
GROUP_COLUMNS = ("runs", "left_out", "fidelity_passed_total", "fidelity_rows_total",
                 "cpu_trusted_runs")
STATS = ("mean", "ci95", "n")
DASH = "—"
_TRUE = ("true", "yes")
_FALSE = ("false", "no")


@functools.lru_cache(maxsize=256)
def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, 95 % CI half-width, n) of the non-NaN ``values``; NaN where undefined."""
    x = np.asarray([v for v in values if not _is_nan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    return float(x.mean()), t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n), n


def _is_nan(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def _number(v: Any) -> float:
    """A cell as a number: bools (however spelt) as 1/0; ValueError when it is not one."""
    if _is_nan(v):
        return math.nan
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, str):
        word = v.strip().lower()
        if word in _TRUE or word in _FALSE:
            return float(word in _TRUE)
    return float(v)


def as_numbers(column: pd.Series) -> pd.Series | None:
    """``column`` as floats (bools as 1/0), or None when some value is not a number."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    try:
        return column.map(_number).astype(float)
    except (TypeError, ValueError):
        return None


def group_axes(axes: Iterable[str]) -> list[str]:
    """The axes a result is reported per: every axis but the seed."""
    return [a for a in axes if a != SEED_AXIS]


def seed_count(points: pd.DataFrame, axes: Iterable[str]) -> int:
    """How many seeds the collection plays (1 when ``seed`` is no axis)."""
    if SEED_AXIS not in axes or SEED_AXIS not in points.columns:
        return 1
    return max(1, int(points[SEED_AXIS].nunique(dropna=True)))


def complete(points: pd.DataFrame) -> pd.Series:
    """Which points are complete (all, when the table has no status)."""
    if "status" not in points.columns:
        return pd.Series(True, index=points.index)
    return points["status"].astype(str) == COMPLETE


def metric_columns(points: pd.DataFrame, axes: Iterable[str]) -> dict[str, pd.Series]:
    """Every numeric (or boolean) summary column of the complete points, as floats."""
    skip = set(NOT_METRICS) | set(axes)
    done = points[complete(points)]
    out = {}
    for col in points.columns:
        if col in skip:
            continue
        values = as_numbers(done[col])
        if values is not None:
            out[str(col)] = values
    return out


def _key(v: Any) -> Any:
    return None if _is_nan(v) else v


def groups(points: pd.DataFrame, by: Sequence[str]) -> list[tuple[dict[str, Any], pd.Index]]:
    """(axis values, row labels) per combination of ``by``, in order of first appearance."""
    if not by:
        return [({}, points.index)]
    found: dict[tuple, list] = {}
    for label, values in zip(points.index, points[list(by)].itertuples(index=False)):
        found.setdefault(tuple(_key(v) for v in values), []).append(label)
    return [(dict(zip(by, (points.at[rows[0], a] for a in by))), pd.Index(rows))
            for rows in found.values()]


@dataclass(frozen=True)
class Verdict:
    """The fidelity and CPU verdict of a set of runs."""

    passed: float  # rows within tolerance, summed over the distinct checks (NaN: none)
    rows: float  # rows measured, likewise
    checks: int  # distinct fidelity checks
    unchecked: int  # runs that ran without a check
    trusted: float  # runs CPU-trusted (NaN: no run recorded it)
    runs: int

    def fidelity_cell(self) -> str:
        """"9/25", or a dash when no run was checked."""
        if self.checks == 0 or _is_nan(self.rows):
            return DASH
        return f"{int(self.passed)}/{int(self.rows)}"

    def trusted_cell(self) -> str:
        """"0/5" runs CPU-trusted, or a dash when none recorded it."""
        return DASH if _is_nan(self.trusted) else f"{int(self.trusted)}/{self.runs}"

    def text(self) -> str:
        """The verdict in one line: "fidelity: 9/25 rows within tolerance; CPU-trusted:
        0/5 runs"."""
        if self.checks == 0 or _is_nan(self.rows):
            fid = "fidelity: not checked"
        else:
            fid = f"fidelity: {self.fidelity_cell()} rows within tolerance"
            if self.checks > 1:
                fid += f" ({self.checks} networks)"
            if self.unchecked:
                fid += f", {self.unchecked} runs not checked"
        cpu = ("not recorded" if _is_nan(self.trusted)
               else f"{self.trusted_cell()} run{'s' if self.runs != 1 else ''}")
        return f"{fid}; CPU-trusted: {cpu}"


def verdict(runs: pd.DataFrame) -> Verdict:
    """The verdict of the rows of ``runs`` (complete runs: the caller picks them).

    Reads ``fidelity_passed``, ``fidelity_rows``, ``fidelity_check`` (runs with one check
    id share one check; without it each run is its own) and ``cpu_trusted``."""
    n = len(runs)
    passed = _column(runs, "fidelity_passed")
    rows = _column(runs, "fidelity_rows")
    ids = runs["fidelity_check"] if "fidelity_check" in runs.columns else pd.Series(
        np.nan, index=runs.index)
    seen: dict[Any, tuple[float, float]] = {}
    unchecked = 0
    for label in runs.index:
        if _is_nan(rows[label]):
            unchecked += 1
            continue
        key = ("check", ids[label]) if not _is_nan(ids[label]) else ("run", label)
        seen.setdefault(key, (passed[label], rows[label]))
    total = (sum(0.0 if _is_nan(p) else p for p, _ in seen.values()),
             sum(r for _, r in seen.values())) if seen else (math.nan, math.nan)
    trusted = _column(runs, "cpu_trusted").dropna()
    return Verdict(total[0], total[1], len(seen), unchecked,
                   float(trusted.sum()) if len(trusted) else math.nan, n)


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    """Column ``col`` as floats (bools as 1/0; anything else NaN), NaN when absent."""
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    nums = as_numbers(df[col])
    if nums is None:
        nums = df[col].map(lambda v: _safe_number(v)).astype(float)
    return nums


def _safe_number(v: Any) -> float:
    try:
        return _number(v)
    except (TypeError, ValueError):
        return math.nan


def aggregate(points: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """One row per combination of the non-seed ``axes``: bookkeeping, then mean, 95 % CI
    and n of every numeric summary metric over the complete points (see the module)."""
    by = [a for a in group_axes(axes) if a in points.columns]
    ok = complete(points)
    metrics = metric_columns(points, axes)
    rows = []
    for values, labels in groups(points, by):
        done = labels[ok[labels].to_numpy()]
        v = verdict(points.loc[done])
        row: dict[str, Any] = {**values, "runs": len(done), "left_out": len(labels) - len(done),
                               "fidelity_passed_total": v.passed,
                               "fidelity_rows_total": v.rows, "cpu_trusted_runs": v.trusted}
        for name, column in metrics.items():
            mean, ci, n = mean_ci(column.loc[done])
            row.update({f"{name}_mean": mean, f"{name}_ci95": ci, f"{name}_n": n})
        rows.append(row)
    columns = [*by, *GROUP_COLUMNS, *(f"{m}_{s}" for m in metrics for s in STATS)]
    return pd.DataFrame(rows, columns=columns)


def fidelity_columns(manifest: dict | None) -> dict[str, Any]:
    """A run's fidelity check as points.csv columns, from its manifest: rows passed, rows
    measured, and the check's id (runs on one network share it); empty when unchecked."""
    fid = (manifest or {}).get("fidelity")
    if not isinstance(fid, dict) or fid.get("measurements") is None:
        return {}
    source = fid.get("source")
    return {"fidelity_passed": fid.get("passed"), "fidelity_rows": fid.get("measurements"),
            "fidelity_check": Path(str(source)).stem if source else None}


def aggregate_verdict(row: pd.Series | dict) -> Verdict:
    """The verdict of one row of :func:`aggregate` (as its columns say it)."""
    get = row.get
    runs = get("runs")
    runs = 0 if _is_nan(runs) or runs is None else int(runs)
    rows = _safe_number(get("fidelity_rows_total"))
    trusted = _safe_number(get("cpu_trusted_runs"))
    checked = not _is_nan(rows)
    return Verdict(_safe_number(get("fidelity_passed_total")), rows, int(checked), 0,
                   trusted, runs)


def mean_ci_text(mean: Any, ci: Any, n: Any, runs: Any, show: Callable[[Any], str],
                 show_ci: Callable[[Any], str] | None = None) -> str:
    """"mean ± ci" with ``show`` for each number (``show_ci`` for the CI if given); the CI
    left out below two values; "(n=k)" added when fewer than ``runs`` runs had a value; a
    dash for no value at all."""
    if _is_nan(mean):
        return DASH
    text = show(mean)
    if not _is_nan(ci):
        text += f" ± {(show_ci or show)(ci)}"
    if not _is_nan(n) and not _is_nan(runs) and int(n) != int(runs):
        text += f" (n={int(n)})"
    return text


__all__ = ["COMPLETE", "GROUP_COLUMNS", "NOT_METRICS", "SEED_AXIS", "STATS", "Verdict",
           "aggregate", "aggregate_verdict", "as_numbers", "complete", "fidelity_columns",
           "group_axes", "groups",
           "mean_ci", "mean_ci_text", "metric_columns", "seed_count", "t975", "verdict"]
