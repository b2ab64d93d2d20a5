"""QoE, cache hits, offload and traffic from a run's event records (pandas tables).

Input is what the daemons write as JSON lines, already parsed: dicts with a ``kind``.

* ``serve`` (a helper answered a viewer): ``node`` (the helper), ``viewer`` (anonymised),
  ``video``, ``index``, ``version``, ``bytes``, ``source``, ``latency_ms``, ``at``.
* ``qoe`` (a viewer session ended): ``node``, ``viewer``, ``video`` and the fields of
  :meth:`testbed.core.player.Player.qoe`, plus ``requests``, ``answered``,
  ``digest_failures`` and ``bytes_by_source``.
* ``traffic`` (bytes a node sent/received by class): ``node``, ``cls``, ``direction``,
  ``bytes``.

Every other kind is ignored, missing optional fields become NA, and empty input gives
empty tables with the same columns, so a failed or short run still produces its tables.
This is the only core module that imports pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

REQUEST_SOURCES = ("cache_prefetch", "cache_tree", "cache_mesh", "cache_live", "tree", "mesh",
                   "origin")
TRAFFIC_CLASSES = ("tree", "mesh", "prefetch", "telemetry", "control", "live", "viewer",
                   "origin")
#: Sources that count as offload from the origin: any helper cache, or a mesh neighbour.
OFFLOAD_SOURCES = ("mesh",)

REQUEST_COLUMNS = ["helper", "viewer", "video", "index", "version", "bytes", "source",
                   "latency_ms", "at"]
VIEWER_COLUMNS = ["node", "viewer", "video", "joined_at", "startup_s", "stalls", "stall_s",
                  "played_s", "rebuffer_ratio", "seek_wait_s", "abandoned", "completed",
                  "segments", "digest_failures", "requests", "answered", "bytes"] + [
                  f"bytes_{s}" for s in REQUEST_SOURCES]
TRAFFIC_COLUMNS = ["node", "cls", "direction", "bytes"]
OVERALL_COLUMNS = ["sessions", "requests", "answered", "digest_failures", "serves", "hit_ratio",
                   "prefetch_hits", "offload", "bytes_to_viewers", "startup_p50_s",
                   "startup_p95_s", "never_started", "rebuffer_ratio", "stalls", "stall_s",
                   "played_s", "seek_wait_s", "completed", "abandoned"]
BY_SOURCE_COLUMNS = ["source", "requests", "bytes", "share_bytes"]
BY_CLASS_COLUMNS = ["cls", "tx_bytes", "rx_bytes"]

_INT_REQUEST = ("index", "version", "bytes")
_FLOAT_REQUEST = ("latency_ms", "at")
_INT_VIEWER = ("stalls", "segments", "digest_failures", "requests", "answered", "bytes")
_FLOAT_VIEWER = ("joined_at", "startup_s", "stall_s", "played_s", "rebuffer_ratio",
                 "seek_wait_s")


def is_cache_source(source: object) -> bool:
    """A request answered from a helper's cache (whatever put the segment there)."""
    return isinstance(source, str) and source.startswith("cache_")


def is_offload_source(source: object) -> bool:
    """A request answered without the tree or the origin: a helper cache or the mesh."""
    return is_cache_source(source) or source in OFFLOAD_SOURCES


def _of(records: Iterable[object], kind: str) -> list[dict]:
    return [r for r in records if isinstance(r, dict) and r.get("kind") == kind]


def _numeric(df: pd.DataFrame, cols: Sequence[str], integer: bool) -> None:
    """Coerce columns to numbers in place (junk -> NA); whole numbers as nullable Int64."""
    for c in cols:
        values = pd.to_numeric(df[c], errors="coerce")
        if integer:
            finite = values.dropna()
            if (finite == finite.round()).all():
                values = values.astype("Int64")
        else:
            values = values.astype("float64")
        df[c] = values


def requests_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per segment a helper served to a viewer (``serve`` records)."""
    rows = []
    for r in _of(records, "serve"):
        row = {c: r.get(c) for c in REQUEST_COLUMNS}
        row["helper"] = r.get("node", r.get("helper"))
        rows.append(row)
    df = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    _numeric(df, _INT_REQUEST, integer=True)
    _numeric(df, _FLOAT_REQUEST, integer=False)
    return df


def viewers_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per viewer session (``qoe`` records), bytes by source spread into columns.

    Scalar fields beyond :data:`VIEWER_COLUMNS` are kept as extra columns (sorted), and
    ``bytes_<source>`` columns are added for sources outside :data:`REQUEST_SOURCES`.
    """
    rows = []
    extra: set[str] = set()
    for r in _of(records, "qoe"):
        row = {k: v for k, v in r.items() if k not in ("kind", "bytes_by_source")
               and (v is None or isinstance(v, (str, int, float, bool)))}
        by_source = r.get("bytes_by_source")
        if isinstance(by_source, dict):
            total = 0
            row.update({f"bytes_{s}": 0 for s in REQUEST_SOURCES})
            for source, n in by_source.items():
                if isinstance(n, (int, float)) and not isinstance(n, bool):
                    row[f"bytes_{source}"] = n
                    total += n
            row.setdefault("bytes", total)
        extra.update(k for k in row if k not in VIEWER_COLUMNS)
        rows.append(row)
    columns = VIEWER_COLUMNS + sorted(extra)
    df = pd.DataFrame(rows, columns=columns)
    _numeric(df, _INT_VIEWER, integer=True)
    _numeric(df, _FLOAT_VIEWER, integer=False)
    _numeric(df, [c for c in columns if c.startswith("bytes_")], integer=True)
    for c in ("abandoned", "completed"):
        df[c] = df[c].map(lambda v: v if isinstance(v, bool) else pd.NA).astype("boolean")
    return df


def traffic_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per ``traffic`` record: bytes a node sent (tx) or received (rx) by class."""
    rows = [{c: r.get(c) for c in TRAFFIC_COLUMNS} for r in _of(records, "traffic")]
    df = pd.DataFrame(rows, columns=TRAFFIC_COLUMNS)
    _numeric(df, ["bytes"], integer=True)
    return df


def by_source(requests: pd.DataFrame) -> pd.DataFrame:
    """Requests and bytes per source, every known source listed (zero when unused)."""
    seen = [s for s in requests["source"].dropna().unique() if s not in REQUEST_SOURCES]
    sources = list(REQUEST_SOURCES) + sorted(map(str, seen))
    counts = requests.groupby("source")["source"].count()
    nbytes = requests.groupby("source")["bytes"].sum()
    total = float(requests["bytes"].sum()) if len(requests) else 0.0
    rows = []
    for s in sources:
        b = int(nbytes.get(s, 0) or 0)
        rows.append({"source": s, "requests": int(counts.get(s, 0)), "bytes": b,
                     "share_bytes": b / total if total > 0 else math.nan})
    return pd.DataFrame(rows, columns=BY_SOURCE_COLUMNS)


def by_class(traffic: pd.DataFrame) -> pd.DataFrame:
    """Bytes sent and received per traffic class, summed over nodes."""
    seen = [c for c in traffic["cls"].dropna().unique() if c not in TRAFFIC_CLASSES]
    classes = list(TRAFFIC_CLASSES) + sorted(map(str, seen))
    sums = traffic.groupby(["cls", "direction"])["bytes"].sum()
    rows = [{"cls": c, "tx_bytes": int(sums.get((c, "tx"), 0) or 0),
             "rx_bytes": int(sums.get((c, "rx"), 0) or 0)} for c in classes]
    return pd.DataFrame(rows, columns=BY_CLASS_COLUMNS)


def _sum(df: pd.DataFrame, col: str) -> float:
    return float(df[col].sum()) if len(df) else 0.0


def overall(requests: pd.DataFrame, viewers: pd.DataFrame) -> pd.DataFrame:
    """The run in one row (see :func:`summary`)."""
    serves = len(requests)
    src = requests["source"]
    cache_hits = int(src.map(is_cache_source).sum()) if serves else 0
    offload_bytes = float(requests.loc[src.map(is_offload_source).astype(bool), "bytes"].sum()) \
        if serves else 0.0
    total_bytes = _sum(requests, "bytes")
    asked = int(_sum(viewers, "requests")) if viewers["requests"].notna().any() else serves
    answered = int(_sum(viewers, "answered")) if viewers["answered"].notna().any() else serves
    requests_n = max(asked, serves)
    startup = viewers["startup_s"].dropna()
    played, stalled = _sum(viewers, "played_s"), _sum(viewers, "stall_s")
    row = {
        "sessions": len(viewers),
        "requests": requests_n,
        "answered": answered,
        "digest_failures": int(_sum(viewers, "digest_failures")),
        "serves": serves,
        "hit_ratio": cache_hits / requests_n if requests_n else math.nan,
        "prefetch_hits": int((src == "cache_prefetch").sum()) if serves else 0,
        "offload": offload_bytes / total_bytes if total_bytes > 0 else math.nan,
        "bytes_to_viewers": int(total_bytes),
        "startup_p50_s": float(startup.quantile(0.5)) if len(startup) else math.nan,
        "startup_p95_s": float(startup.quantile(0.95)) if len(startup) else math.nan,
        "never_started": int(viewers["startup_s"].isna().sum()),
        "rebuffer_ratio": stalled / (played + stalled) if played + stalled > 0 else math.nan,
        "stalls": int(_sum(viewers, "stalls")),
        "stall_s": stalled,
        "played_s": played,
        "seek_wait_s": _sum(viewers, "seek_wait_s"),
        "completed": int(viewers["completed"].fillna(False).sum()),
        "abandoned": int(viewers["abandoned"].fillna(False).sum()),
    }
    return pd.DataFrame([row], columns=OVERALL_COLUMNS)


def summary(records: Iterable[dict]) -> dict[str, pd.DataFrame]:
    """The run's tables: ``per_viewer``, ``overall`` (one row), ``by_source``, ``by_class``.

    In ``overall``: ``requests`` are the viewers' segment requests (the helpers' serves if
    more, e.g. when some viewer logs are missing); ``hit_ratio`` = requests answered from
    any helper cache / requests; ``prefetch_hits`` = answers from prefetched segments;
    ``offload`` = bytes to viewers from helper caches or the mesh / all bytes to viewers;
    startup percentiles over sessions that started (``never_started`` counts the rest);
    ``rebuffer_ratio`` = total stall time / (total played + total stall time).  Ratios with
    nothing to divide by are NaN.
    """
    records = list(records)
    requests = requests_table(records)
    viewers = viewers_table(records)
    traffic = traffic_table(records)
    return {"per_viewer": viewers, "overall": overall(requests, viewers),
            "by_source": by_source(requests), "by_class": by_class(traffic)}
