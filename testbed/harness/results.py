"""A run's logs -> tidy tables (pandas) and the one-row ``summary.csv``.

The QoE, hit-ratio and byte accounting come from :mod:`testbed.core.metrics`; this module
reads the JSON-lines logs, adds what only a whole run shows (tiers found, invalidation
propagation, live reception, rejected messages, cache high-water marks) and writes files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from testbed.core import metrics


def read_logs(out: Path) -> list[dict]:
    """Every record of every daemon's log (a torn last line is skipped)."""
    records: list[dict] = []
    for path in sorted((Path(out) / "logs").glob("*.jsonl")):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
    return records


def _of(records: Iterable[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind") == kind]


def invalidation_table(records: list[dict]) -> pd.DataFrame:
    """One row per (republish, helper): when the invalidation reached the helper."""
    rows = [{"inv_id": r["inv_id"], "helper": r["node"], "video": r["video"],
             "version": r["version"], "delay_ms": r["delay_ms"], "at": r["at"]}
            for r in _of(records, "invalidated")]
    return pd.DataFrame(rows, columns=["inv_id", "helper", "video", "version", "delay_ms", "at"])


def stale_serves(records: list[dict]) -> pd.DataFrame:
    """Segments of an old version served by a helper after its invalidation arrived."""
    arrived = {(r["node"], r["video"]): (r["at"], r["version"])
               for r in _of(records, "invalidated")}
    rows = []
    for r in _of(records, "serve"):
        got = arrived.get((r["node"], r["video"]))
        if got and r["at"] >= got[0] and r["version"] < got[1]:
            rows.append(r)
    return pd.DataFrame(rows)


def extras(records: list[dict]) -> dict:
    """Run-level figures the per-request tables do not carry."""
    out: dict = {}
    tiers = _of(records, "tiers")
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
    for r in _of(records, "rejected"):
        rejected[r["reason"]] = rejected.get(r["reason"], 0) + 1
    out["rejected"] = sum(rejected.values())
    out["rejected_by_reason"] = json.dumps(rejected, sort_keys=True)
    caches = _of(records, "cache_state") + _of(records, "cache")
    if caches:
        out["cache_over_capacity"] = sum(1 for c in caches
                                         if c["used_bytes"] > c["capacity_bytes"])
        out["cache_max_fill"] = max(c["used_bytes"] / c["capacity_bytes"] for c in caches
                                    if c["capacity_bytes"])
    sent: dict[str, int] = {}
    for r in _of(records, "traffic"):
        if r.get("direction") == "tx":
            sent[r["cls"]] = sent.get(r["cls"], 0) + int(r["bytes"])
    if sent.get("viewer"):
        # what the mesh's upkeep costs: telemetry, predictions and control bytes per byte
        # to viewers
        upkeep = sum(sent.get(c, 0) for c in ("telemetry", "prediction", "control"))
        out["overhead_ratio"] = round(upkeep / sent["viewer"], 4)
    qoe = _of(records, "qoe")
    if qoe:
        # the viewers' own count: every request answered, failed, or still in flight when
        # the run ended (helpers may have served those last few; the viewer never saw them)
        out["viewer_requests"] = sum(int(r.get("requests", 0)) for r in qoe)
        out["viewer_answered"] = sum(int(r.get("answered", 0)) for r in qoe)
        out["viewer_cut_at_stop"] = sum(int(r.get("cut_at_stop", 0)) for r in qoe)
    out["live_segments_received"] = len(_of(records, "live_rx"))
    out["pushes"] = len(_of(records, "push"))
    out["push_bytes"] = sum(r["bytes"] for r in _of(records, "push"))
    return out


def write_results(out: Path, more: dict | None = None) -> dict:
    """Write ``tables/*.csv`` and ``summary.csv`` (with ``more`` appended, e.g. the CPU
    verdict); return the summary row as a dict."""
    out = Path(out)
    records = read_logs(out)
    tables = metrics.summary(records)
    tdir = out / "tables"
    tdir.mkdir(exist_ok=True)
    for name, df in tables.items():
        df.to_csv(tdir / f"{name}.csv", index=False)
    metrics.requests_table(records).to_csv(tdir / "requests.csv", index=False)
    invalidation_table(records).to_csv(tdir / "invalidations.csv", index=False)
    row = {}
    overall = tables.get("overall")
    if overall is not None and len(overall):
        row.update({k: (v.item() if hasattr(v, "item") else v)
                    for k, v in overall.iloc[0].to_dict().items()})
    row.update(extras(records))
    row.update(more or {})
    pd.DataFrame([row]).to_csv(out / "summary.csv", index=False)
    return row
