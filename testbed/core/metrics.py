"""QoE, cache hits, offload, origin egress and traffic from a run's event records (pandas).

Input is what the daemons write as JSON lines, already parsed: dicts with a ``kind``.

* ``serve`` (a helper answered a viewer): ``node`` (the helper), ``viewer`` (anonymised),
  ``video``, ``index``, ``version``, ``bytes``, ``source``, ``latency_ms``, ``at``.
* ``qoe`` (a viewer session ended): ``node``, ``viewer``, ``video`` and the fields of
  :meth:`testbed.core.player.Player.qoe`, plus ``requests``, ``answered``,
  ``digest_failures``, ``bytes_by_source``, ``ended`` (the session finished on its own,
  not cut by the run's stop) and, in newer logs, ``asked_at`` (run seconds of the
  session's first request, the manifest's included) and ``abandoned_at_start`` (the viewer
  left because start-up outlasted its patience).
* ``request`` / ``request_failed`` (a viewer's segment request answered / given up):
  ``node`` (the viewer host), ``player``, ``video``, ``index``, ``at``, ``digest_ok``.
* ``traffic`` (bytes a node sent/received by class, once when it stops): ``node``, ``cls``,
  ``direction``, ``bytes``.
* ``egress`` (only the master writes them, about once a second and once at its stop):
  ``by_cls`` = bytes it sent per class since its previous ``egress`` record.
* ``push`` (the master pushed a segment), ``mesh_rx`` (a helper received one hop of a
  push; ``kept`` when it cached the copy), ``upstream_serve`` (a helper answered another
  helper's tree or mesh fetch; ``source`` where the bytes came from).

Warm-up: every row table has a boolean ``warmup`` column, True for what happened before
``warmup_s`` run seconds; the tables keep those rows and the summary leaves them out, so
cold caches and an untrained model do not weigh on the figures.

Every other kind is ignored, missing optional fields become NA, and empty input gives
empty tables with the same columns, so a failed or short run still produces its tables.
Ratios with nothing to divide by are NaN.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from testbed.core import records as R
from testbed.core.records import Root, Source

#: Every source a request can be answered from, in table order (plain strings).
REQUEST_SOURCES = tuple(s.value for s in Source)
TRAFFIC_CLASSES = ("tree", "mesh", "prefetch", "telemetry", "prediction", "control", "live",
                   "viewer", "origin")
#: Sources that count as offload from the origin: any helper cache, or a mesh neighbour.
OFFLOAD_SOURCES = (Source.MESH.value,)
#: Traffic classes that are the mesh's upkeep (``overhead_ratio``); pushes are apart.
OVERHEAD_CLASSES = ("telemetry", "prediction", "control")
#: The class of pushed segments, on every hop.
PUSH_CLASS = "prefetch"
#: The master's nominal time between ``egress`` records (the first one covers this much).
EGRESS_PERIOD_S = 1.0

REQUEST_COLUMNS = ["helper", "viewer", "video", "index", "version", "bytes", "source", "root",
                   "latency_ms", "at", "warmup"]
VIEWER_COLUMNS = ["node", "viewer", "video", "asked_at", "joined_at", "warmup", "startup_s",
                  "stalls", "stall_s", "played_s", "rebuffer_ratio", "seek_wait_s", "ended",
                  "abandoned", "abandoned_at_start", "completed", "segments",
                  "digest_failures", "requests", "answered", "bytes"] + [
                  f"bytes_{s}" for s in REQUEST_SOURCES]
ASK_COLUMNS = ["node", "player", "video", "index", "at", "answered", "digest_ok", "warmup"]
TRAFFIC_COLUMNS = ["node", "cls", "direction", "bytes"]
EGRESS_COLUMNS = ["node", "since", "at", "warmup", "bytes"] + [
                  f"bytes_{c}" for c in TRAFFIC_CLASSES]
HOP_COLUMNS = ["push_id", "helper", "sender", "video", "index", "at", "bytes", "kept",
               "warmup"]
PUSH_COLUMNS = ["push_id", "video", "index", "dest", "at", "bytes", "warmup"]
OVERALL_COLUMNS = ["warmup_s", "sessions", "requests", "answered", "digest_failures", "serves",
                   "hit_ratio", "prefetch_hits", "serve_offload", "bytes_to_viewers",
                   "origin_bytes", "origin_push_bytes", "origin_per_viewer_byte",
                   "byte_offload", "origin_peak_mbit", "startup_p50_s", "startup_p95_s",
                   "never_started", "abandoned_at_start", "waiting_at_stop",
                   "rebuffer_ratio", "stalls", "stall_s", "played_s", "seek_wait_s",
                   "completed", "abandoned", "overhead_ratio", "push_hop_bytes",
                   "push_ratio", "push_hop_bytes_after_warmup", "push_ratio_after_warmup"]
BY_SOURCE_COLUMNS = ["source", "requests", "bytes", "share_bytes"]
BY_CLASS_COLUMNS = ["cls", "tx_bytes", "rx_bytes"]

_INT_REQUEST = ("index", "version", "bytes")
_FLOAT_REQUEST = ("latency_ms", "at")
_INT_VIEWER = ("stalls", "segments", "digest_failures", "requests", "answered", "bytes")
_FLOAT_VIEWER = ("asked_at", "joined_at", "startup_s", "stall_s", "played_s",
                 "rebuffer_ratio", "seek_wait_s")
_BOOL_VIEWER = ("ended", "abandoned", "abandoned_at_start", "completed")


def is_cache_source(source: object) -> bool:
    """A request answered from a helper's cache (whatever put the segment there)."""
    return R.is_cache(source)


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
    via_tree = (src == Source.TREE.value) & (requests["root"] == Root.CACHE.value)
    return (src.map(is_offload_source).astype(bool) | via_tree.fillna(False)).astype(bool)


def _of(records: Iterable[object], kind: str) -> list[dict]:
    return [r for r in records if isinstance(r, dict) and r.get("kind") == kind]


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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


def _flags(values: pd.Series) -> pd.Series:
    """True/False where a record said so, NA elsewhere (nullable boolean)."""
    return values.map(lambda v: v if isinstance(v, bool) else pd.NA).astype("boolean")


def check_warmup(warmup_s: float) -> float:
    """``warmup_s`` as a float, refused unless finite and >= 0."""
    w = float(warmup_s)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"warmup_s must be a finite number >= 0, got {warmup_s!r}")
    return w


def in_warmup(at: pd.Series, warmup_s: float) -> pd.Series:
    """Per row: did it happen before ``warmup_s`` run seconds?  Unknown times count as
    after, and a warm-up of 0 leaves nothing out (not even records before second 0)."""
    w = check_warmup(warmup_s)
    at = pd.to_numeric(at, errors="coerce").astype("float64")
    if w == 0:
        return pd.Series(False, index=at.index, dtype=bool)
    return (at < w).fillna(False).astype(bool)


def after_warmup(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the summary counts: those not flagged ``warmup`` (all without the column)."""
    if "warmup" not in df.columns or not len(df):
        return df
    return df[~df["warmup"].astype(bool)]


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 and not math.isnan(num) else math.nan


def requests_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per segment a helper served to a viewer (``serve`` records)."""
    fields = REQUEST_COLUMNS[:-1]
    rows = []
    for r in _of(records, R.SERVE):
        row = {c: r.get(c) for c in fields}
        row["helper"] = r.get("node", r.get("helper"))
        rows.append(row)
    df = pd.DataFrame(rows, columns=fields)
    _numeric(df, _INT_REQUEST, integer=True)
    _numeric(df, _FLOAT_REQUEST, integer=False)
    df["warmup"] = in_warmup(df["at"], warmup_s)
    return df


def asks_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per segment request a viewer finished (``request``: answered;
    ``request_failed``: given up), timed, so that a warm-up can cut it where sessions
    cannot; ``digest_ok`` is NA for failed ones."""
    rows = []
    for kind, answered in ((R.REQUEST, True), (R.REQUEST_FAILED, False)):
        for r in _of(records, kind):
            ok = r.get("digest_ok") if answered else None
            rows.append({"node": r.get("node"), "player": r.get("player"),
                         "video": r.get("video"), "index": r.get("index"), "at": r.get("at"),
                         "answered": answered, "digest_ok": ok})
    df = pd.DataFrame(rows, columns=ASK_COLUMNS[:-1])
    _numeric(df, ["index"], integer=True)
    _numeric(df, ["at"], integer=False)
    df["answered"] = df["answered"].astype(bool)
    df["digest_ok"] = _flags(df["digest_ok"])
    df["warmup"] = in_warmup(df["at"], warmup_s)
    return df


def _session_start(r: dict) -> float:
    """When a session began: its first request, else its join, else its record's time
    (the latest it can have begun)."""
    for key in ("asked_at", "joined_at", "at"):
        v = r.get(key)
        if _is_number(v) and math.isfinite(v):
            return float(v)
    return math.nan


def viewers_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per viewer session (``qoe`` records), bytes by source spread into columns.

    Scalar fields beyond :data:`VIEWER_COLUMNS` are kept as extra columns (sorted), and
    ``bytes_<source>`` columns are added for sources outside :data:`REQUEST_SOURCES`.
    ``warmup``: the session began (``asked_at``, else ``joined_at``) before ``warmup_s``.
    """
    rows = []
    starts = []
    extra: set[str] = set()
    for r in _of(records, R.QOE):
        row = {k: v for k, v in r.items() if k not in ("kind", "bytes_by_source", "warmup")
               and (v is None or isinstance(v, (str, int, float, bool)))}
        by_source = r.get("bytes_by_source")
        if isinstance(by_source, dict):
            total = 0
            row.update({f"bytes_{s}": 0 for s in REQUEST_SOURCES})
            for source, n in by_source.items():
                if _is_number(n):
                    row[f"bytes_{source}"] = n
                    total += n
            row.setdefault("bytes", total)
        extra.update(k for k in row if k not in VIEWER_COLUMNS)
        rows.append(row)
        starts.append(_session_start(r))
    columns = VIEWER_COLUMNS + sorted(extra)
    df = pd.DataFrame(rows, columns=columns)
    _numeric(df, _INT_VIEWER, integer=True)
    _numeric(df, _FLOAT_VIEWER, integer=False)
    _numeric(df, [c for c in columns if c.startswith("bytes_")], integer=True)
    for c in _BOOL_VIEWER:
        df[c] = _flags(df[c])
    df["warmup"] = in_warmup(pd.Series(starts, index=df.index, dtype="float64"), warmup_s)
    return df


def start_state(viewers: pd.DataFrame) -> pd.Series:
    """Per session, how its start-up went: "started" (a first frame), "waiting" (none yet
    and still waiting when the run stopped: censored, not a failure), "abandoned" (left
    for patience before a first frame) or "failed" (ended without one otherwise).

    Sessions whose log has no ``ended`` (old logs) are never "waiting"; without
    ``abandoned_at_start`` a session that ended abandoned before a first frame counts as
    left for patience (the only way to leave during start-up).
    """
    if not len(viewers):
        return pd.Series([], dtype=object)
    started = viewers["startup_s"].notna()
    left = viewers["abandoned_at_start"].fillna(viewers["abandoned"]).fillna(False)
    waiting = (viewers["ended"] == False).fillna(False) & ~left  # noqa: E712 -- nullable
    state = np.select([started, left.astype(bool), waiting.astype(bool)],
                      ["started", "abandoned", "waiting"], "failed")
    return pd.Series(state, index=viewers.index, dtype=object)


def traffic_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per ``traffic`` record: bytes a node sent (tx) or received (rx) by class."""
    rows = [{c: r.get(c) for c in TRAFFIC_COLUMNS} for r in _of(records, R.TRAFFIC)]
    df = pd.DataFrame(rows, columns=TRAFFIC_COLUMNS)
    _numeric(df, ["bytes"], integer=True)
    return df


def egress_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per ``egress`` record: bytes the origin (the node writing them) sent per
    class in (``since``, ``at``]; ``since`` is its previous record's time, or
    :data:`EGRESS_PERIOD_S` before the first.  ``bytes`` sums every class; classes
    outside :data:`TRAFFIC_CLASSES` get their own ``bytes_<cls>`` columns.  A record is
    in the warm-up when the middle of the interval it covers is: it is written at the
    interval's end, so its own ``at`` would let a second of warm-up in."""
    rows = []
    seen: set[str] = set()
    for r in _of(records, R.EGRESS):
        row = {"node": r.get("node"), "at": r.get("at")}
        by_cls = r.get("by_cls")
        if isinstance(by_cls, dict):
            for cls, n in by_cls.items():
                if _is_number(n):
                    row[f"bytes_{cls}"] = n
                    seen.add(str(cls))
        rows.append(row)
    classes = list(TRAFFIC_CLASSES) + sorted(seen - set(TRAFFIC_CLASSES))
    by_cls_cols = [f"bytes_{c}" for c in classes]
    df = pd.DataFrame(rows, columns=["node", "at"] + by_cls_cols)
    df["node"] = df["node"].fillna("?").astype(str)
    df["at"] = pd.to_numeric(df["at"], errors="coerce").astype("float64")
    df = df.dropna(subset=["at"]).sort_values(["node", "at"], kind="stable")
    df = df.reset_index(drop=True)
    for c in by_cls_cols:
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0)
    _numeric(df, by_cls_cols, integer=True)
    df["bytes"] = df[by_cls_cols].sum(axis=1) if len(df) else pd.Series([], dtype="Int64")
    df["since"] = df.groupby("node")["at"].shift(1).fillna(df["at"] - EGRESS_PERIOD_S)
    df["warmup"] = in_warmup((df["since"] + df["at"]) / 2, warmup_s)
    return df[EGRESS_COLUMNS[:5] + by_cls_cols]


def push_hops_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per hop of a push a helper received (``mesh_rx``), kept or passed on."""
    rows = [{"push_id": r.get("push_id"), "helper": r.get("node"), "sender": r.get("sender"),
             "video": r.get("video"), "index": r.get("index"), "at": r.get("at"),
             "bytes": r.get("bytes"), "kept": bool(r.get("kept"))}
            for r in _of(records, R.MESH_RX)]
    df = pd.DataFrame(rows, columns=HOP_COLUMNS[:-1])
    _numeric(df, ["index", "bytes"], integer=True)
    _numeric(df, ["at"], integer=False)
    df["kept"] = df["kept"].astype(bool)
    df["warmup"] = in_warmup(df["at"], warmup_s)
    return df


def pushes_table(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per push the master sent (``push`` records)."""
    rows = [{c: r.get(c) for c in PUSH_COLUMNS[:-1]} for r in _of(records, R.PUSH)]
    df = pd.DataFrame(rows, columns=PUSH_COLUMNS[:-1])
    _numeric(df, ["index", "bytes"], integer=True)
    _numeric(df, ["at"], integer=False)
    df["warmup"] = in_warmup(df["at"], warmup_s)
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


# ----------------------------------------------------------------- origin egress

def _egress_curves(egress: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per origin node: cumulative bytes sent (``fp``) at times ``xp``, linear in between
    (a record's bytes spread evenly over the interval it covers)."""
    curves = []
    for _, g in egress.groupby("node", sort=True):
        per_at = g.groupby("at")["bytes"].sum().astype("float64")
        first_at = float(per_at.index[0])
        start = float(g["since"].iloc[0])
        if not start < first_at:
            start = first_at - EGRESS_PERIOD_S
        xp = np.concatenate([[start], per_at.index.to_numpy(dtype="float64")])
        fp = np.concatenate([[0.0], np.cumsum(per_at.to_numpy())])
        curves.append((xp, fp))
    return curves


def origin_rate(egress: pd.DataFrame, from_s: float = -math.inf) -> pd.Series:
    """The origin's send rate (bytes/s) per run second it was running (the span its
    ``egress`` records cover, from ``from_s`` on), indexed by the second's start.

    A second only partly covered (the span's ends) gets the rate over the covered part,
    and a second inside the span in which nothing was sent counts as 0."""
    total: pd.Series = pd.Series([], dtype="float64")
    for xp, fp in _egress_curves(egress):
        lo_span, hi_span = max(float(xp[0]), from_s), float(xp[-1])
        if not hi_span > lo_span:
            continue
        k = np.arange(math.floor(lo_span), math.ceil(hi_span), dtype="float64")
        lo, hi = np.maximum(k, lo_span), np.minimum(k + 1, hi_span)
        keep = hi - lo > 1e-6
        k, lo, hi = k[keep], lo[keep], hi[keep]
        rate = (np.interp(hi, xp, fp) - np.interp(lo, xp, fp)) / (hi - lo)
        total = total.add(pd.Series(rate, index=k), fill_value=0.0)
    return total.sort_index()


def origin_by_step(egress: pd.DataFrame, step_s: float, n: int) -> np.ndarray:
    """Bytes the origin sent in each of ``n`` buckets of ``step_s`` from second 0; what
    came before goes to the first bucket and after to the last (as requests do)."""
    out = np.zeros(n)
    edges = np.arange(1, n, dtype="float64") * step_s
    for xp, fp in _egress_curves(egress):
        cum = np.concatenate([[0.0], np.interp(edges, xp, fp), [fp[-1]]])
        out += np.diff(cum)
    return out


def origin_costs(egress: pd.DataFrame, viewer_bytes: float, warmup_s: float = 0.0) -> dict:
    """What the origin sent after the warm-up (``egress`` rows not flagged ``warmup``).

    ``origin_bytes``: every class (answers, manifests, live multicast, pushes, control);
    ``origin_push_bytes``: class "prefetch"; ``origin_per_viewer_byte`` = origin_bytes /
    ``viewer_bytes``; ``byte_offload`` = 1 - that, negative when the origin sent more
    than the viewers received (pushes that were not used, multicast to idle helpers): it
    is not clipped; ``origin_peak_mbit``: p95 over the run's seconds of the origin's send
    rate in Mbit/s (:func:`origin_rate`, from the warm-up on).  All NaN without ``egress``
    records (logs from before the master wrote them).
    """
    nan = {"origin_bytes": math.nan, "origin_push_bytes": math.nan,
           "origin_per_viewer_byte": math.nan, "byte_offload": math.nan,
           "origin_peak_mbit": math.nan}
    if not len(egress):
        return nan
    kept = after_warmup(egress)
    origin = _sum(kept, "bytes")
    per_byte = _ratio(origin, viewer_bytes)
    w = check_warmup(warmup_s)
    rates = origin_rate(kept, from_s=w if w > 0 else -math.inf)
    return {"origin_bytes": int(origin), "origin_push_bytes": int(_sum(kept, "bytes_prefetch")),
            "origin_per_viewer_byte": per_byte, "byte_offload": 1.0 - per_byte,
            "origin_peak_mbit": float(rates.quantile(0.95)) * 8 / 1e6 if len(rates)
            else math.nan}


def traffic_costs(traffic: pd.DataFrame, hops: pd.DataFrame | None,
                  viewer_bytes: float) -> dict:
    """Upkeep and pushes, per byte to viewers.

    From the ``traffic`` totals, which cover the whole run (the warm-up included: they are
    not timed), per byte the helpers sent to viewers (class "viewer"):
    ``overhead_ratio`` = telemetry + prediction + control bytes sent by all nodes;
    ``push_hop_bytes`` = class "prefetch" bytes sent by all nodes (every hop of every
    push); ``push_ratio`` = that per viewer byte.  From the timed per-hop ``mesh_rx``
    records (payload bytes of every hop a helper accepted; wire framing and refused hops
    not counted): ``push_hop_bytes_after_warmup`` and ``push_ratio_after_warmup`` (per
    ``viewer_bytes``, the bytes served after the warm-up).
    """
    tx = traffic[traffic["direction"] == "tx"].groupby("cls")["bytes"].sum()
    viewer = float(tx.get("viewer", 0) or 0)
    known = len(traffic) > 0
    upkeep = float(sum(tx.get(c, 0) or 0 for c in OVERHEAD_CLASSES))
    pushed = float(tx.get(PUSH_CLASS, 0) or 0)
    timed = _sum(after_warmup(hops), "bytes") if hops is not None else math.nan
    return {"overhead_ratio": _ratio(upkeep, viewer),
            "push_hop_bytes": int(pushed) if known else math.nan,
            "push_ratio": _ratio(pushed, viewer) if known else math.nan,
            "push_hop_bytes_after_warmup": timed if math.isnan(timed) else int(timed),
            "push_ratio_after_warmup": _ratio(timed, viewer_bytes)}


def byte_hops(links: pd.DataFrame | None, viewer_bytes: float) -> dict:
    """Bytes summed over every emulated link, both directions (a byte crossing three links
    counts three times), and per byte to viewers.  NaN without a links table or when a
    link has no counters (a partial sum would look like a saving).  Link counters are
    wire bytes (headers included), the viewer bytes payload."""
    if links is None or not len(links):
        return {"byte_hops": math.nan, "byte_hops_per_viewer_byte": math.nan}
    both = links[["bytes_ab", "bytes_ba"]].apply(pd.to_numeric, errors="coerce")
    if both.isna().any().any():
        return {"byte_hops": math.nan, "byte_hops_per_viewer_byte": math.nan}
    total = float(both.to_numpy().sum())
    return {"byte_hops": int(total), "byte_hops_per_viewer_byte": _ratio(total, viewer_bytes)}


def origin_wire(links: pd.DataFrame | None, master: str | None, viewer_bytes: float) -> dict:
    """What the master's own links carried away from it, as the switches counted it (wire
    bytes: headers and retransmissions included): the cross-check of ``origin_bytes``,
    which counts what the master's daemon sent.  NaN without a links table or a master."""
    nan = {"origin_wire_bytes": math.nan, "origin_wire_per_viewer_byte": math.nan}
    if links is None or not len(links) or not master:
        return nan
    out = pd.to_numeric(links.loc[links["a"] == master, "bytes_ab"], errors="coerce").sum() + \
        pd.to_numeric(links.loc[links["b"] == master, "bytes_ba"], errors="coerce").sum()
    if not ((links["a"] == master) | (links["b"] == master)).any():
        return nan
    return {"origin_wire_bytes": int(out),
            "origin_wire_per_viewer_byte": _ratio(float(out), viewer_bytes)}


# ------------------------------------------------------------------------ summary

def _sessions(viewers: pd.DataFrame) -> dict:
    """Start-up and playback figures over the sessions given."""
    state = start_state(viewers)
    startup = viewers["startup_s"][(state == "started").to_numpy(dtype=bool)]
    played, stalled = _sum(viewers, "played_s"), _sum(viewers, "stall_s")
    return {
        "sessions": len(viewers),
        "startup_p50_s": float(startup.quantile(0.5)) if len(startup) else math.nan,
        "startup_p95_s": float(startup.quantile(0.95)) if len(startup) else math.nan,
        "never_started": int(state.isin(["abandoned", "failed"]).sum()),
        "abandoned_at_start": int((state == "abandoned").sum()),
        "waiting_at_stop": int((state == "waiting").sum()),
        "rebuffer_ratio": stalled / (played + stalled) if played + stalled > 0 else math.nan,
        "stalls": int(_sum(viewers, "stalls")),
        "stall_s": stalled,
        "played_s": played,
        "seek_wait_s": _sum(viewers, "seek_wait_s"),
        "completed": int(viewers["completed"].fillna(False).sum()),
        "abandoned": int(viewers["abandoned"].fillna(False).sum()),
    }


def viewer_counts(viewers: pd.DataFrame, asks: pd.DataFrame | None,
                  serves: int) -> dict[str, int]:
    """The viewers' own count of requests, answers and digest failures: from their timed
    ``request`` records when there are any (``asks``), else summed over the sessions' ``qoe``
    records (old logs), else the helpers' serves."""
    if asks is not None and len(asks):
        asks = after_warmup(asks)
        return {"requests": len(asks), "answered": int(asks["answered"].sum()),
                "digest_failures": int((asks["digest_ok"] == False).sum())}  # noqa: E712
    got = {c: int(_sum(viewers, c)) if viewers[c].notna().any() else serves
           for c in ("requests", "answered")}
    return {**got, "digest_failures": int(_sum(viewers, "digest_failures"))}


def overall(requests: pd.DataFrame, viewers: pd.DataFrame, *,
            asks: pd.DataFrame | None = None, egress: pd.DataFrame | None = None,
            traffic: pd.DataFrame | None = None, hops: pd.DataFrame | None = None,
            warmup_s: float = 0.0) -> pd.DataFrame:
    """The run in one row (see :func:`summary`); rows flagged ``warmup`` are left out.
    Without ``egress`` / ``traffic`` / ``hops`` their columns are NaN."""
    requests, viewers = after_warmup(requests), after_warmup(viewers)
    serves = len(requests)
    src = requests["source"]
    cache_hits = int(src.map(is_cache_source).sum()) if serves else 0
    offload_bytes = float(requests.loc[offloaded(requests), "bytes"].sum()) if serves else 0.0
    total_bytes = _sum(requests, "bytes")
    counts = viewer_counts(viewers, asks, serves)
    requests_n = max(counts["requests"], serves)
    row = {
        "warmup_s": check_warmup(warmup_s),
        "requests": requests_n,
        "answered": counts["answered"],
        "digest_failures": counts["digest_failures"],
        "serves": serves,
        "hit_ratio": cache_hits / requests_n if requests_n else math.nan,
        "prefetch_hits": int((src == Source.CACHE_PREFETCH.value).sum()) if serves else 0,
        "serve_offload": offload_bytes / total_bytes if total_bytes > 0 else math.nan,
        "bytes_to_viewers": int(total_bytes),
        **_sessions(viewers),
        **origin_costs(egress if egress is not None else egress_table([]), total_bytes,
                       warmup_s),
        **traffic_costs(traffic if traffic is not None else traffic_table([]), hops,
                        total_bytes),
    }
    return pd.DataFrame([row], columns=OVERALL_COLUMNS)


def event_tables(records: Iterable[dict], warmup_s: float = 0.0) -> dict[str, pd.DataFrame]:
    """Every row table a run's records give, each with its ``warmup`` flags: ``requests``,
    ``viewers``, ``asks``, ``traffic``, ``egress``, ``hops``, ``pushes``, ``copies``."""
    records = list(records)
    return {"requests": requests_table(records, warmup_s),
            "viewers": viewers_table(records, warmup_s),
            "asks": asks_table(records, warmup_s),
            "traffic": traffic_table(records),
            "egress": egress_table(records, warmup_s),
            "hops": push_hops_table(records, warmup_s),
            "pushes": pushes_table(records, warmup_s),
            "copies": prefetch_copies(records, warmup_s)}


def summarise(tables: dict[str, pd.DataFrame], warmup_s: float = 0.0) -> dict[str, pd.DataFrame]:
    """``per_viewer`` (every session), ``overall`` (one row, after the warm-up),
    ``by_source`` (requests after the warm-up) and ``by_class`` (whole-run totals) from
    :func:`event_tables`."""
    requests = tables["requests"]
    return {"per_viewer": tables["viewers"],
            "overall": overall(requests, tables["viewers"], asks=tables.get("asks"),
                               egress=tables["egress"], traffic=tables["traffic"],
                               hops=tables["hops"], warmup_s=warmup_s),
            "by_source": by_source(after_warmup(requests)),
            "by_class": by_class(tables["traffic"])}


def summary(records: Iterable[dict], warmup_s: float = 0.0) -> dict[str, pd.DataFrame]:
    """The run's tables: ``per_viewer``, ``overall`` (one row), ``by_source``, ``by_class``.

    ``overall`` counts only what happened from ``warmup_s`` run seconds on: requests by
    their ``at``, sessions by their first request (``asked_at``, else ``joined_at``),
    origin egress by the time its records cover (:func:`egress_table`).  In it:

    * ``requests``, ``answered``, ``digest_failures``: the viewers' segment requests by
      their time (:func:`viewer_counts`; ``requests`` is the helpers' serves if more, e.g.
      when some viewer logs are missing);
    * ``hit_ratio``, the edge hit ratio: requests answered from the serving helper's own
      cache (whatever put the segment there) / requests; ``prefetch_hits``: answers from
      prefetched copies;
    * ``serve_offload``: bytes to viewers that the origin did not send for that request
      (a helper cache, the mesh, or an ancestor helper's cache; :func:`offloaded`) / all
      bytes to viewers.  Blind to what it cost: a push that put the copy there left the
      origin too;
    * ``byte_offload`` and the other ``origin_*`` columns: what the origin really sent,
      pushes included (:func:`origin_costs`); the headline offload;
    * start-up percentiles over sessions that started; ``never_started``: sessions with no
      first frame that were not still waiting at the stop, of which
      ``abandoned_at_start`` left for patience; ``waiting_at_stop``: sessions still
      waiting for a first frame when the run stopped (censored, not failures)
      (:func:`start_state`);
    * ``rebuffer_ratio`` = total stall time / (total played + total stall time);
    * ``overhead_ratio``, ``push_ratio``: whole-run totals (:func:`traffic_costs`).
    """
    check_warmup(warmup_s)
    return summarise(event_tables(records, warmup_s), warmup_s)


# ----------------------------------------------------------- prefetch and time

COPY_COLUMNS = ["push_id", "helper", "video", "index", "at", "bytes", "dest", "used",
                "first_use_at", "use", "warmup"]
INTERVAL_COLUMNS = ["t", "warmup", "requests", "hits", "hit_ratio", "bytes",
                    "serve_offload_bytes", "serve_offload", "origin", "byte_offload",
                    "pushes", "push_bytes", "copies", "copies_used", "push_precision"]


def _copy_uses(records: list[dict]) -> dict[tuple, tuple[list[float], list[str]]]:
    """Per (helper, video, index): times it answered from a prefetched copy, in order, and
    who got it ("viewer": a ``serve``; "onward": an ``upstream_serve`` to another helper;
    a viewer first when both happened at the same time)."""
    uses: dict[tuple, list[tuple[float, int, str]]] = {}
    for kind, use, rank in ((R.SERVE, "viewer", 0), (R.UPSTREAM_SERVE, "onward", 1)):
        for r in _of(records, kind):
            if r.get("source") == Source.CACHE_PREFETCH:
                key = (r.get("node"), r.get("video"), r.get("index"))
                uses.setdefault(key, []).append((float(r.get("at", 0.0)), rank, use))
    out = {}
    for key, got in uses.items():
        got.sort()
        out[key] = ([t for t, _, _ in got], [u for _, _, u in got])
    return out


def prefetch_copies(records: Iterable[dict], warmup_s: float = 0.0) -> pd.DataFrame:
    """One row per pushed copy a helper kept (``mesh_rx`` with ``kept``), and whether it was
    used: the helper answered from it (``cache_prefetch``) after the copy arrived and
    before the next copy of that segment did, to a viewer (``serve``) or onward to another
    helper's tree or mesh fetch (``upstream_serve``).  ``first_use_at`` is the first such
    answer and ``use`` ("viewer" or "onward") who got it; ``warmup``: arrived before
    ``warmup_s``."""
    records = list(records)
    copies = sorted(((r.get("node"), r.get("video"), r.get("index"), float(r.get("at", 0.0)),
                      r) for r in _of(records, R.MESH_RX) if r.get("kept")),
                    key=lambda c: (str(c[0]), str(c[1]), c[2] if isinstance(c[2], int) else -1,
                                   c[3]))
    uses = _copy_uses(records)
    rows = []
    for i, (helper, video, index, at, r) in enumerate(copies):
        nxt = copies[i + 1] if i + 1 < len(copies) else None
        until = nxt[3] if nxt and nxt[:3] == (helper, video, index) else math.inf
        times, who = uses.get((helper, video, index), ([], []))
        j = bisect.bisect_left(times, at)
        hit = j < len(times) and times[j] < until
        rows.append({"push_id": r.get("push_id"), "helper": helper, "video": video,
                     "index": index, "at": at, "bytes": r.get("bytes"),
                     "dest": bool(r.get("dest")), "used": hit,
                     "first_use_at": times[j] if hit else math.nan,
                     "use": who[j] if hit else None})
    df = pd.DataFrame(rows, columns=COPY_COLUMNS[:-1])
    _numeric(df, ["index", "bytes"], integer=True)
    _numeric(df, ["at", "first_use_at"], integer=False)
    df["used"] = df["used"].astype(bool)
    df["warmup"] = in_warmup(df["at"], warmup_s)
    return df


def prefetch_outcome(copies: pd.DataFrame, end_at: float, settle_s: float) -> dict:
    """Precision and waste of the pushed copies after the warm-up (rows not flagged
    ``warmup``) that arrived at least ``settle_s`` before ``end_at``: later ones had no
    fair chance to be asked for.  ``settle_s`` is the pushing policy's own horizon (its
    forecast horizon plus its prefetch interval), so each policy is judged on its own bet.

    ``prefetch_copies`` = copies after the warm-up; ``prefetch_precision`` = copies used at
    least once (by a viewer or onward, :func:`prefetch_copies`) / copies judged;
    ``prefetch_waste`` = bytes of copies never used / bytes of copies judged.
    """
    copies = after_warmup(copies)
    judged = copies[copies["at"] <= end_at - settle_s] if len(copies) else copies
    n = len(judged)
    total = float(judged["bytes"].sum()) if n else 0.0
    unused = float(judged.loc[~judged["used"].astype(bool), "bytes"].sum()) if n else 0.0
    return {"prefetch_copies": int(len(copies)), "prefetch_copies_judged": n,
            "prefetch_copies_used": int(judged["used"].astype(bool).sum()) if n else 0,
            "prefetch_precision": float(judged["used"].astype(bool).mean()) if n else math.nan,
            "prefetch_waste": unused / total if total > 0 else math.nan}


def intervals_table(records: Iterable[dict], step_s: float, end_at: float,
                    warmup_s: float = 0.0) -> pd.DataFrame:
    """The run in ``step_s`` buckets from second 0 to ``end_at``: requests and cache hits,
    bytes and serve offload, the origin's egress, the master's pushes, and the copies kept
    and later used (see :func:`intervals_of`)."""
    return intervals_of(event_tables(records, warmup_s), step_s, end_at, warmup_s)


def _per_bucket(df: pd.DataFrame, b: pd.Series, col: str | None, n: int) -> np.ndarray:
    """Row count (``col`` None) or sum of ``col`` per bucket 0..n-1."""
    g = df.assign(b=b).groupby("b")
    got = g.size() if col is None else g[col].sum()
    return got.reindex(range(n), fill_value=0).to_numpy()


def intervals_of(tables: dict[str, pd.DataFrame], step_s: float, end_at: float,
                 warmup_s: float = 0.0) -> pd.DataFrame:
    """The intervals table from :func:`event_tables`.  Rows are by time (what came before
    second 0 goes to the first, after ``end_at`` to the last); ``origin`` is the bytes the
    master sent in the bucket (its ``egress`` records spread over the time they cover),
    ``byte_offload`` = 1 - origin / bytes; ``warmup``: the bucket begins before
    ``warmup_s``.  Every row is kept."""
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    w = check_warmup(warmup_s)
    requests, copies, pushes = tables["requests"], tables["copies"], tables["pushes"]
    n = max(1, math.ceil(end_at / step_s))

    def bucket(at: pd.Series) -> pd.Series:
        return (pd.to_numeric(at, errors="coerce") // step_s).clip(0, n - 1)

    out = pd.DataFrame({"t": [i * step_s for i in range(n)]})
    out["warmup"] = (out["t"] < w) if w > 0 else False
    req = requests.assign(hit=requests["source"].map(is_cache_source).astype(bool),
                          off=offloaded(requests).to_numpy())
    req["offb"] = req["bytes"].where(req["off"], 0)
    rb = bucket(req["at"])
    out["requests"] = _per_bucket(req, rb, None, n)
    out["hits"] = _per_bucket(req, rb, "hit", n)
    out["bytes"] = _per_bucket(req, rb, "bytes", n)
    out["serve_offload_bytes"] = _per_bucket(req, rb, "offb", n)
    out["origin"] = origin_by_step(tables["egress"], step_s, n)
    pb = bucket(pushes["at"])
    out["pushes"] = _per_bucket(pushes, pb, None, n)
    out["push_bytes"] = _per_bucket(pushes, pb, "bytes", n)
    cb = bucket(copies["at"])
    out["copies"] = _per_bucket(copies, cb, None, n)
    out["copies_used"] = _per_bucket(copies.assign(u=copies["used"].astype(bool)), cb, "u", n)
    for c in ("requests", "hits", "bytes", "serve_offload_bytes", "pushes", "push_bytes",
              "copies", "copies_used"):
        out[c] = out[c].astype("int64")
    viewer_bytes = out["bytes"].where(out["bytes"] > 0)
    out["hit_ratio"] = out["hits"] / out["requests"].where(out["requests"] > 0)
    out["serve_offload"] = out["serve_offload_bytes"] / viewer_bytes
    out["byte_offload"] = 1 - out["origin"] / viewer_bytes
    out["push_precision"] = out["copies_used"] / out["copies"].where(out["copies"] > 0)
    if not len(tables["egress"]):
        out["origin"] = out["byte_offload"] = math.nan
    return out[INTERVAL_COLUMNS]
