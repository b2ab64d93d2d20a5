"""Traces on disk: :func:`write_trace` and :func:`read_trace`, CSV or Parquet.

The edge of :mod:`testbed.core.workload`, which builds, checks and replays traces but
does no file I/O: reading parses the file and hands the frame to
:func:`~testbed.core.workload.check_trace`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from testbed.core.workload import TRACE_COLUMNS, TRACE_SUFFIXES, WorkloadError, check_trace


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TRACE_SUFFIXES:
        raise WorkloadError(f"trace {path}: suffix {path.suffix!r} is not one of "
                            f"{TRACE_SUFFIXES}")
    return suffix


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def write_trace(df: pd.DataFrame, path: str | Path) -> None:
    """Write the trace columns of ``df`` to ``path`` (``.csv`` or ``.parquet``), no index."""
    p = Path(path)
    suffix = _suffix(p)
    missing = [c for c in TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise WorkloadError(f"trace {p}: missing column(s) {', '.join(missing)}")
    out = df[list(TRACE_COLUMNS)]
    if suffix == ".csv":
        out.to_csv(p, index=False, lineterminator="\n")
    else:
        out.to_parquet(p, index=False)


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace from a ``.csv`` or ``.parquet`` file: the columns of
    :data:`~testbed.core.workload.TRACE_COLUMNS` (others dropped) with their types, sorted
    by (at, viewer).

    Raises :class:`~testbed.core.workload.WorkloadError` naming the file for an unreadable
    file, a missing column, a bad value (with its column and row, 1 for the first data row)
    or an unknown kind.
    """
    p = Path(path)
    suffix = _suffix(p)
    try:
        if suffix == ".csv":
            raw = pd.read_csv(p, dtype=str, keep_default_na=False)
        else:
            raw = pd.read_parquet(p)
    except Exception as e:  # the readers raise many kinds; all mean an unreadable file
        raise WorkloadError(f"trace {p}: cannot read: {_one_line(e)}") from None
    return check_trace(raw, f"trace {p}")
