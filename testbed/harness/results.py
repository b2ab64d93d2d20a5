"""A run's logs -> tidy tables (pandas) and the one-row ``summary.csv``.

The QoE, hit-ratio, origin-egress and byte accounting come from
:mod:`testbed.core.metrics`; this module reads the JSON-lines logs, adds what only a whole
run shows (tiers found, invalidation propagation, live reception, rejected messages, cache
high-water marks, bytes over the emulated links) and writes files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import pandas as pd

from testbed.core import metrics
from testbed.core import records as R
from testbed.core.spec import MASTER


def read_logs(out: Path) -> list[dict]:
    """Every record of every daemon's log (a torn last line is skipped).

    A log is parsed as one JSON array where it can be, so that its records share their
    keys' strings (the parser reuses a key within one document): about 40 % less memory
    than a document per line, which is what a large simulated run's tables are held in.
    """
    records: list[dict] = []
    for path in sorted((Path(out) / "logs").glob("*.jsonl")):
        lines = path.read_text().splitlines()
        try:
            got = json.loads("[" + ",".join(lines) + "]")
        except ValueError:  # a torn or bad line: each line on its own
            got = []
            for line in lines:
                try:
                    got.append(json.loads(line))
                except ValueError:
                    continue
        records.extend(r for r in got if isinstance(r, dict))
    return records


def _of(records: Iterable[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind") == kind]


def invalidation_table(records: list[dict]) -> pd.DataFrame:
    """One row per (republish, helper): when the invalidation reached the helper."""
    rows = [{"inv_id": r["inv_id"], "helper": r["node"], "video": r["video"],
             "version": r["version"], "delay_ms": r["delay_ms"], "at": r["at"]}
            for r in _of(records, R.INVALIDATED)]
    return pd.DataFrame(rows, columns=["inv_id", "helper", "video", "version", "delay_ms", "at"])


def stale_serves(records: list[dict]) -> pd.DataFrame:
    """Segments of an old version served by a helper after its invalidation arrived."""
    arrived = {(r["node"], r["video"]): (r["at"], r["version"])
               for r in _of(records, R.INVALIDATED)}
    rows = []
    for r in _of(records, R.SERVE):
        got = arrived.get((r["node"], r["video"]))
        if got and r["at"] >= got[0] and r["version"] < got[1]:
            rows.append(r)
    return pd.DataFrame(rows)


def unanswered(records: list[dict], warmup_s: float = 0.0) -> set[tuple]:
    """(player, video, index) of each segment a viewer gave up on after the warm-up
    (``request_failed``: its retries ran out) and never had answered later: a request
    given up and asked again until answered is not in it."""
    failed: dict[tuple, float] = {}
    for r in _of(records, R.REQUEST_FAILED):
        if float(r["at"]) >= warmup_s:
            key = (r["player"], r["video"], r["index"])
            failed[key] = max(failed.get(key, -math.inf), float(r["at"]))
    if not failed:
        return set()
    answered: dict[tuple, float] = {}
    for r in _of(records, R.REQUEST):
        key = (r["player"], r["video"], r["index"])
        if key in failed:
            answered[key] = max(answered.get(key, -math.inf), float(r["at"]))
    return {k for k, at in failed.items() if answered.get(k, -math.inf) < at}


def extras(records: list[dict], warmup_s: float = 0.0) -> dict:
    """Run-level figures the per-request tables do not carry.

    The checks (tiers, invalidation delays, stale serves, rejected messages, cache
    capacity) and the upkeep (``overhead_ratio``, from untimed totals) cover the whole
    run, so that a warm-up cannot hide a fault; the viewers' requests and answers, the
    pushes and the live segments received are counted by their ``at`` from the warm-up
    on, like the rest of the summary; requests cut at the stop come after any warm-up.
    """
    out: dict = {}
    tiers = _of(records, R.TIERS)
    if tiers:
        out["tiers"] = json.dumps(tiers[-1]["tiers"])
        out["tier_recomputes"] = len(tiers)
    inv = invalidation_table(records)
    if len(inv):
        out["invalidation_p50_ms"] = float(inv["delay_ms"].median())
        out["invalidation_max_ms"] = float(inv["delay_ms"].max())
        out["invalidation_helpers"] = int(inv["helper"].nunique())
    out["stale_serves"] = len(stale_serves(records))
    rejected: dict[str, int] = {}
    for r in _of(records, R.REJECTED):
        rejected[r["reason"]] = rejected.get(r["reason"], 0) + 1
    out["rejected"] = sum(rejected.values())
    out["rejected_by_reason"] = json.dumps(rejected, sort_keys=True)
    # telemetry that never reached the engine: batches it could not be sent (an engine
    # outage) and records the helpers' buffers dropped to make room
    out["telemetry_lost_events"] = sum(r["events"] for r in _of(records, R.TELEMETRY_LOST))
    out["telemetry_dropped"] = sum(r["dropped"] for r in _of(records, R.TELEMETRY_BUFFER))
    caches = _of(records, R.CACHE_STATE) + _of(records, R.CACHE)
    if caches:
        out["cache_over_capacity"] = sum(1 for c in caches
                                         if c["used_bytes"] > c["capacity_bytes"])
        out["cache_max_fill"] = max(c["used_bytes"] / c["capacity_bytes"] for c in caches
                                    if c["capacity_bytes"])
    # what the mesh's upkeep costs over the whole run (also in metrics' summary row)
    out["overhead_ratio"] = metrics.traffic_costs(metrics.traffic_table(records), None,
                                                  0.0)["overhead_ratio"]
    viewers = metrics.viewers_table(records, warmup_s)
    if len(viewers):
        # the viewers' own count: every request answered, failed (after the warm-up), or
        # still in flight when the run ended (helpers may have served those last few; the
        # viewer never saw them), whenever the session began
        counts = metrics.viewer_counts(metrics.after_warmup(viewers),
                                       metrics.asks_table(records, warmup_s), 0)
        out["viewer_requests"] = counts["requests"]
        out["viewer_answered"] = counts["answered"]
        cut = pd.to_numeric(viewers.get("cut_at_stop", pd.Series([], dtype=float)),
                            errors="coerce")
        out["viewer_cut_at_stop"] = int(cut.fillna(0).sum())
    # recovery, from the warm-up on: stalls one by one, sessions that moved to another
    # server, the master's last-resort answers to viewers; and the rebuffer ratio of every
    # session that ended after the warm-up, those that began in it too (the summary's
    # rebuffer_ratio leaves those out, but faults strike sessions of any age)
    def after(kind: str) -> list[dict]:
        return [r for r in _of(records, kind) if float(r.get("at", 0.0)) >= warmup_s]

    waits = [float(r.get("wait_s", 0.0)) for r in after(R.PLAYER)
             if r.get("event") == "resume_play" and r.get("cause") == "stall"]
    out["stall_events"] = len(waits)
    out["longest_stall_s"] = max(waits, default=0.0)
    ended = after(R.QOE)
    stalled = sum(float(q.get("stall_s") or 0.0) for q in ended)
    played = sum(float(q.get("played_s") or 0.0) for q in ended)
    out["rebuffer_ratio_all_sessions"] = (stalled / (stalled + played) if stalled + played > 0
                                          else math.nan)
    out["unanswered_segments"] = len(unanswered(records, warmup_s))
    out["failovers"] = len(after(R.FAILOVER))
    out["master_viewer_serves"] = len(after(R.VIEWER_SERVE))
    live = pd.Series([r.get("at") for r in _of(records, R.LIVE_RX)], dtype="float64")
    out["live_segments_received"] = int((~metrics.in_warmup(live, warmup_s)).sum())
    pushes = metrics.after_warmup(metrics.pushes_table(records, warmup_s))
    out["pushes"] = len(pushes)
    out["push_bytes"] = int(pushes["bytes"].sum()) if len(pushes) else 0
    return out


PREDICTION_COLUMNS = ["version", "trained_at", "scored_from", "scored_to", "precision",
                      "recall", "mae", "playhead_precision", "playhead_mae"]
LINK_COLUMNS = ["a", "b", "delay_ms", "bw_mbit", "bytes_ab", "bytes_ba", "utilisation"]


def predictions_table(out: Path) -> pd.DataFrame:
    """One row per engine model that was scored: on the telemetry that came after it was
    trained, until the next model replaced it (``engine/models/model-v*.json``)."""
    rows = []
    for path in sorted((Path(out) / "engine" / "models").glob("model-v*.json")):
        try:
            m = json.loads(path.read_text())
            version = int(path.stem.rsplit("v", 1)[1])
        except (OSError, ValueError):
            continue
        ev = m.get("evaluation") or {}
        if not ev:
            continue
        model, play = ev.get("model") or {}, ev.get("playhead") or {}
        rows.append({"version": version, "trained_at": m.get("trained_at"),
                     "scored_from": m.get("trained_at"), "scored_to": ev.get("until"),
                     "precision": model.get("precision"), "recall": model.get("recall"),
                     "mae": model.get("mae"), "playhead_precision": play.get("precision"),
                     "playhead_mae": play.get("mae")})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def links_table(spec: nx.Graph, port_bytes: dict[str, tuple[int, int]],
                ports: dict[tuple[str, str], str], seconds: float) -> pd.DataFrame:
    """Bytes each way over every link of ``spec`` during ``seconds`` of run.

    ``ports`` names, per link (a, b), an interface at ``a`` in the switches' namespace;
    ``port_bytes`` gives each interface's (tx, rx) bytes over the run.  ``utilisation`` is
    the busier direction's mean rate over the link's bandwidth (NaN when unlimited).
    """
    rows = []
    for a, b, data in spec.edges(data=True):
        a, b = (a, b) if (a, b) in ports else (b, a)
        got = port_bytes.get(ports.get((a, b), ""))
        tx, rx = got if got else (None, None)
        bw = data.get("bw_mbit")
        util = (max(tx, rx) * 8 / seconds / (bw * 1e6)
                if got and bw and seconds > 0 else math.nan)
        rows.append({"a": a, "b": b, "delay_ms": data.get("delay_ms"), "bw_mbit": bw,
                     "bytes_ab": tx, "bytes_ba": rx, "utilisation": util})
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


#: The link emulator's counters in ``summary.csv`` (whole run, all lanes; empty in netem
#: mode): frames in, frames dropped because a delay line was full, frames sent over 1 ms
#: late (per million sent), and the worst lane's 99th-percentile lateness.
EMULATOR_COLUMNS = ("emu_frames", "emu_overflow", "emu_overdue", "emu_overdue_ppm",
                    "emu_late_p99_us")


def emulator_figures(stats: dict | None) -> dict:
    """``summary.csv``'s emulator columns from ``linkemu-stats.json`` (None: no emulator)."""
    lanes = (stats or {}).get("lanes") or []
    if not lanes:
        return dict.fromkeys(EMULATOR_COLUMNS)
    frames = sum(int(x.get("packets_in", 0)) for x in lanes)
    sent = sum(int(x.get("sent", 0)) for x in lanes)
    overdue = sum(int(x.get("overdue", 0)) for x in lanes)
    p99 = [x["lateness_us"]["p99"] for x in lanes
           if isinstance(x.get("lateness_us"), dict) and x["lateness_us"].get("p99") is not None]
    return {"emu_frames": frames,
            "emu_overflow": sum(int(x.get("overflow", 0)) for x in lanes),
            "emu_overdue": overdue,
            "emu_overdue_ppm": round(1e6 * overdue / sent, 1) if sent else None,
            "emu_late_p99_us": max(p99) if p99 else None}


def topology_view(spec: nx.Graph, records: list[dict]) -> dict:
    """The network for a drawing: nodes with role and tier, links, the last tree (parent ->
    child) the master set up and the mesh the helpers last chose."""
    tiers: dict[str, int] = {}
    for i, names in enumerate((_of(records, R.TIERS) or [{"tiers": []}])[-1]["tiers"]):
        tiers.update({h: i + 1 for h in names})
    parent: dict[str, str] = {}
    mesh: dict[str, list[str]] = {}
    for r in records:
        if r.get("kind") == R.ROUTING and r.get("parent"):
            parent[r["node"]] = r["parent"]
        elif r.get("kind") == R.NEIGHBOURS:
            mesh[r["node"]] = list(r.get("neighbours") or [])
    pairs = sorted({tuple(sorted((h, n))) for h, ns in mesh.items() for n in ns})
    return {
        "nodes": [{"name": n, "role": d.get("role", "switch"), "tier": tiers.get(n)}
                  for n, d in spec.nodes(data=True)],
        "links": [{"a": a, "b": b, "delay_ms": d.get("delay_ms"), "bw_mbit": d.get("bw_mbit")}
                  for a, b, d in spec.edges(data=True)],
        "tree": sorted([p, c] for c, p in parent.items()),
        "mesh": [list(p) for p in pairs],
    }


def write_results(out: Path, more: dict | None = None, *, end_at: float | None = None,
                  settle_s: float = 6.0, interval_s: float = 5.0,
                  spec: nx.Graph | None = None, links: pd.DataFrame | None = None,
                  warmup_s: float = 0.0) -> dict:
    """Write ``tables/*.csv`` and ``summary.csv`` (with ``more`` appended, e.g. the CPU
    verdict and the fidelity check); return the summary row as a dict.

    ``warmup_s``: every summary figure leaves out what happened before this many run
    seconds (:mod:`testbed.core.metrics`); the row tables keep those rows, flagged
    ``warmup``.  ``end_at`` (run seconds; default: the last record) bounds the
    per-interval table and the prefetch judgement, which leaves out copies that arrived in
    the last ``settle_s``: the pushing policy's own horizon (its forecast horizon plus its
    prefetch interval), so each policy's waste is judged after its own bet has played out.
    With ``spec`` also ``topology.json``; with ``links`` (bytes per link, counted by the
    caller from the warm-up on) also ``tables/links.csv`` and the ``byte_hops`` columns.
    """
    out = Path(out)
    warmup_s = metrics.check_warmup(warmup_s)
    records = read_logs(out)
    if end_at is None:
        end_at = max((float(r.get("at", 0.0)) for r in records), default=0.0)
    rows = metrics.event_tables(records, warmup_s)
    tables = metrics.summarise(rows, warmup_s)
    tdir = out / "tables"
    tdir.mkdir(exist_ok=True)
    for name, df in tables.items():
        df.to_csv(tdir / f"{name}.csv", index=False)
    tables["per_viewer"].to_csv(tdir / "viewers.csv", index=False)
    rows["requests"].to_csv(tdir / "requests.csv", index=False)
    invalidation_table(records).to_csv(tdir / "invalidations.csv", index=False)
    rows["copies"].to_csv(tdir / "prefetch.csv", index=False)
    rows["egress"].to_csv(tdir / "egress.csv", index=False)
    metrics.intervals_of(rows, interval_s, end_at, warmup_s).to_csv(tdir / "intervals.csv",
                                                                     index=False)
    predictions_table(out).to_csv(tdir / "predictions.csv", index=False)
    if links is not None:
        links.to_csv(tdir / "links.csv", index=False)
    if spec is not None:
        (out / "topology.json").write_text(json.dumps(topology_view(spec, records), indent=1))
    row = dict(tables["overall"].to_dict("records")[0])  # each column keeps its type
    row.update(metrics.byte_hops(links, row["bytes_to_viewers"]))
    masters = [n for n, r in (spec.nodes(data="role") if spec is not None else ()) if r == MASTER]
    row.update(metrics.origin_wire(links, masters[0] if masters else None,
                                   row["bytes_to_viewers"]))
    row.update(extras(records, warmup_s))
    row.update(metrics.prefetch_outcome(rows["copies"], end_at, settle_s))
    row.update(more or {})
    pd.DataFrame([row]).to_csv(out / "summary.csv", index=False)
    return row
