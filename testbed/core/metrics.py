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
TRAFFIC_CLASSES = ("tree", "mesh", "prefetch", "telemetry", "prediction", "control", "live",
                   "viewer", "origin")
#: Sources that count as offload from the origin: any helper cache, or a mesh neighbour.
OFFLOAD_SOURCES = ("mesh",)

REQUEST_COLUMNS = ["helper", "viewer", "video", "index", "version", "bytes", "source", "root",
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


def offloaded(requests: pd.DataFrame) -> pd.Series:
    """Per request: were its bytes spared the origin?  Yes when a helper cache or the mesh
    answered, or a tree fetch that an ancestor helper answered from its cache (``root``
    "cache"); no when the master sent them for this request."""
    if not len(requests):
        return pd.Series([], dtype=bool)
    src = requests["source"]
    via_tree = (src == "tree") & (requests["root"] == "cache")
    return (src.map(is_offload_source).astype(bool) | via_tree.fillna(False)).astype(bool)


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
    offload_bytes = float(requests.loc[offloaded(requests), "bytes"].sum()) if serves else 0.0
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
    ``offload`` = bytes to viewers that the origin did not send for the request (from a
    helper cache, the mesh, or an ancestor helper's cache; :func:`offloaded`) / all bytes;
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


# ----------------------------------------------------------- prefetch and time

COPY_COLUMNS = ["push_id", "helper", "video", "index", "at", "bytes", "dest", "used",
                "first_use_at"]
INTERVAL_COLUMNS = ["t", "requests", "hits", "hit_ratio", "bytes", "offload_bytes", "offload",
                    "pushes", "push_bytes", "copies", "copies_used", "push_precision"]


def prefetch_copies(records: Iterable[dict]) -> pd.DataFrame:
    """One row per pushed copy a helper kept (``mesh_rx`` with ``kept``), and whether a viewer
    was served from it: a ``cache_prefetch`` serve of that segment at that helper after the
    copy arrived and before the next copy of it did (``first_use_at`` the first such)."""
    records = list(records)
    copies = sorted(((r.get("node"), r.get("video"), r.get("index"), float(r.get("at", 0.0)),
                      r) for r in _of(records, "mesh_rx") if r.get("kept")),
                    key=lambda c: (str(c[0]), str(c[1]), c[2] if isinstance(c[2], int) else -1,
                                   c[3]))
    uses: dict[tuple, list[float]] = {}
    for r in _of(records, "serve"):
        if r.get("source") == "cache_prefetch":
            key = (r.get("node"), r.get("video"), r.get("index"))
            uses.setdefault(key, []).append(float(r.get("at", 0.0)))
    for times in uses.values():
        times.sort()
    rows = []
    for i, (helper, video, index, at, r) in enumerate(copies):
        nxt = copies[i + 1] if i + 1 < len(copies) else None
        until = nxt[3] if nxt and nxt[:3] == (helper, video, index) else math.inf
        first = next((t for t in uses.get((helper, video, index), ()) if at <= t < until),
                     None)
        rows.append({"push_id": r.get("push_id"), "helper": helper, "video": video,
                     "index": index, "at": at, "bytes": r.get("bytes"),
                     "dest": bool(r.get("dest")), "used": first is not None,
                     "first_use_at": math.nan if first is None else first})
    df = pd.DataFrame(rows, columns=COPY_COLUMNS)
    _numeric(df, ["index", "bytes"], integer=True)
    _numeric(df, ["at", "first_use_at"], integer=False)
    return df


def prefetch_outcome(copies: pd.DataFrame, end_at: float, settle_s: float) -> dict:
    """Precision and waste of the pushed copies that arrived at least ``settle_s`` before
    ``end_at`` (later ones had no fair chance to be asked for):

    ``prefetch_precision`` = copies served at least once / copies;
    ``prefetch_waste`` = bytes of copies never served / bytes of copies.
    """
    judged = copies[copies["at"] <= end_at - settle_s] if len(copies) else copies
    n = len(judged)
    total = float(judged["bytes"].sum()) if n else 0.0
    unused = float(judged.loc[~judged["used"].astype(bool), "bytes"].sum()) if n else 0.0
    return {"prefetch_copies": int(len(copies)), "prefetch_copies_judged": n,
            "prefetch_copies_used": int(judged["used"].astype(bool).sum()) if n else 0,
            "prefetch_precision": float(judged["used"].astype(bool).mean()) if n else math.nan,
            "prefetch_waste": unused / total if total > 0 else math.nan}


def intervals_table(records: Iterable[dict], step_s: float, end_at: float) -> pd.DataFrame:
    """The run in ``step_s`` buckets from second 0 to ``end_at``: requests and cache hits,
    bytes and offload, the master's pushes, and the copies kept and later used."""
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    records = list(records)
    requests = requests_table(records)
    copies = prefetch_copies(records)
    pushes = pd.DataFrame([{"at": float(r.get("at", 0.0)), "bytes": r.get("bytes", 0)}
                           for r in _of(records, "push")], columns=["at", "bytes"])
    n = max(1, math.ceil(end_at / step_s))

    def bucket(at: pd.Series) -> pd.Series:
        return (pd.to_numeric(at, errors="coerce") // step_s).clip(0, n - 1)

    out = pd.DataFrame({"t": [i * step_s for i in range(n)]})
    if len(requests):
        req = requests.assign(b=bucket(requests["at"]),
                              hit=requests["source"].map(is_cache_source).astype(bool),
                              off=offloaded(requests))
        req["offb"] = req["bytes"].where(req["off"], 0)
        g = req.groupby("b")
        out["requests"] = g.size().reindex(range(n), fill_value=0).to_numpy()
        out["hits"] = g["hit"].sum().reindex(range(n), fill_value=0).to_numpy()
        out["bytes"] = g["bytes"].sum().reindex(range(n), fill_value=0).to_numpy()
        out["offload_bytes"] = g["offb"].sum().reindex(range(n), fill_value=0).to_numpy()
    else:
        out["requests"] = out["hits"] = out["bytes"] = out["offload_bytes"] = 0
    pg = pushes.assign(b=bucket(pushes["at"])).groupby("b")
    out["pushes"] = pg.size().reindex(range(n), fill_value=0).to_numpy()
    out["push_bytes"] = pg["bytes"].sum().reindex(range(n), fill_value=0).to_numpy()
    cg = copies.assign(b=bucket(copies["at"]), u=copies["used"].astype(bool)).groupby("b")
    out["copies"] = cg.size().reindex(range(n), fill_value=0).to_numpy()
    out["copies_used"] = cg["u"].sum().reindex(range(n), fill_value=0).to_numpy()
    out["hit_ratio"] = out["hits"] / out["requests"].where(out["requests"] > 0)
    out["offload"] = out["offload_bytes"] / out["bytes"].where(out["bytes"] > 0)
    out["push_precision"] = out["copies_used"] / out["copies"].where(out["copies"] > 0)
    return out[INTERVAL_COLUMNS]
