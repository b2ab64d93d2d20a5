"""The trace frame: its columns, kinds and types, and :func:`check_trace` for one from elsewhere."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from testbed.core.workload.checks import WorkloadError

#: The columns of a trace, in order.
TRACE_COLUMNS = ("at", "helper", "viewer", "video", "kind", "playhead_s", "index")
#: Row kinds: a segment request, then the player events.
TRACE_KINDS = ("request", "start", "pause", "resume", "seek", "resume_play", "stop",
               "complete", "abandon")
#: The file suffixes a trace is stored under (see :mod:`testbed.traces`).
TRACE_SUFFIXES = (".csv", ".parquet")


def _typed(cols: Mapping[str, Sequence]) -> pd.DataFrame:
    return pd.DataFrame({
        c: pd.Series(np.asarray(cols[c], dtype=np.float64)) if c in ("at", "playhead_s")
        else pd.Series(np.asarray(cols[c], dtype=np.int64)) if c == "index"
        else pd.Series(list(cols[c]), dtype=object)
        for c in TRACE_COLUMNS})


def _floats(where: str, col: str, values: np.ndarray) -> np.ndarray:
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (TypeError, ValueError):
                raise WorkloadError(f"{where}: column {col!r} row {i + 1}: {v!r} is not a "
                                    f"number") from None
        raise WorkloadError(f"{where}: column {col!r} is not numeric") from None
    bad = ~np.isfinite(out) | (out < (-1 if col == "index" else 0))
    if col == "index":
        bad |= np.isfinite(out) & (out != np.floor(out))
    if bad.any():
        i = int(np.argmax(bad))
        what = "an integer >= -1" if col == "index" else "a finite number >= 0"
        raise WorkloadError(f"{where}: column {col!r} row {i + 1}: {values[i]!r} is not {what}")
    return out


def check_trace(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    """The trace columns of ``raw`` (others dropped) with their types, checked, sorted by
    (at, viewer).

    ``raw`` may hold text (a CSV read as strings) or typed columns.  Raises
    :class:`WorkloadError` starting with ``where`` for a missing column, a bad value (with
    its column and row, 1 for the first data row) or an unknown kind.
    """
    missing = [c for c in TRACE_COLUMNS if c not in raw.columns]
    if missing:
        raise WorkloadError(f"{where}: missing column(s) {', '.join(missing)}")
    cols: dict[str, Sequence] = {}
    for col in TRACE_COLUMNS:
        values = raw[col].to_numpy(dtype=object)
        if col in ("at", "playhead_s", "index"):
            cols[col] = _floats(where, col, values)
            continue
        texts = []
        for i, v in enumerate(values):
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) \
                    or str(v) == "":
                raise WorkloadError(f"{where}: column {col!r} row {i + 1}: empty")
            texts.append(v if isinstance(v, str) else str(v))
        cols[col] = texts
    kinds = set(TRACE_KINDS)
    for i, k in enumerate(cols["kind"]):
        if k not in kinds:
            raise WorkloadError(f"{where}: column 'kind' row {i + 1}: {k!r} is not one of "
                                f"{TRACE_KINDS}")
    index = cols["index"]
    bad = (np.asarray(cols["kind"], dtype=object) == "request") & (np.asarray(index) < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise WorkloadError(f"{where}: column 'index' row {i + 1}: a request needs an index "
                            f">= 0, got {int(index[i])}")
    frame = _typed(cols)
    return frame.sort_values(["at", "viewer"], kind="stable").reset_index(drop=True)
