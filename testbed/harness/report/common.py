"""What every part of the report shares: the key metrics, the one way a value is shown
(:func:`fmt`), the error a report raises, and reading its input files."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Shown first, in this order, wherever they are present.
KEY_METRICS = ("hit_ratio", "byte_offload", "origin_per_viewer_byte", "origin_peak_mbit",
               "startup_p50_s", "startup_p95_s", "never_started", "abandoned_at_start",
               "rebuffer_ratio", "prefetch_precision", "prefetch_waste", "push_ratio",
               "overhead_ratio", "byte_hops_per_viewer_byte", "pushes", "push_bytes",
               "requests", "answered", "sessions", "abandoned", "cpu_idle_mean", "cpu_trusted")
#: The key metrics a collection plots, one panel each.
PLOT_METRICS = ("hit_ratio", "byte_offload", "origin_per_viewer_byte", "startup_p95_s",
                "rebuffer_ratio", "prefetch_waste", "push_ratio")
DASH = "—"


class ReportError(ValueError):
    """A directory that is neither a run nor a collection, or a required file unreadable."""


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`write_report` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]


def fmt(v: object) -> str:
    """The one way the report shows a value: floats to 4 significant digits, ints and
    int-valued floats as plain ints, bools and strings as they are, NaN and None as a dash."""
    if v is None or v is pd.NA or v is pd.NaT:
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return DASH
        if f.is_integer():
            return str(int(f))
        return f"{f:.4g}"
    return str(v)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as a frame; ReportError naming the file when it cannot be read."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ReportError(f"{path}: unreadable: {_one_line(exc)}") from None


def _read_json(path: Path) -> Any:
    """A JSON file's value; ReportError naming the file when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable: {_one_line(exc)}") from None


def _row(df: pd.DataFrame, i: int) -> dict[str, Any]:
    """Row ``i`` as column -> value, each value keeping its own column's type."""
    return {c: df[c].iloc[i] for c in df.columns}



def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _truthy(s: pd.Series) -> pd.Series:
    """Bools however the CSV spelt them (True/False, 1/0)."""
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))



def _verdict_text(note: str) -> str:
    """The verdict line shown under the key-metrics table (and atop every figure)."""
    return f"Verdict of the figures: {note}."

