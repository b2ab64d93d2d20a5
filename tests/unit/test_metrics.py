"""Run tables from event records: requests, viewers, traffic and the summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from testbed.core import metrics as M


def serve(source, nbytes=100_000, **kw):
    rec = {"kind": "serve", "node": "h1", "viewer": "ab12cd34ab12cd34", "video": "vod-0001",
           "index": 3, "version": 1, "bytes": nbytes, "source": source, "latency_ms": 4.2,
           "at": 12.3}
    rec.update(kw)
    return rec


def qoe(viewer, **kw):
    rec = {"kind": "qoe", "node": "v1", "viewer": viewer, "video": "vod-0001",
           "joined_at": 1.0, "startup_s": 1.0, "stalls": 0, "stall_s": 0.0, "played_s": 20.0,
           "rebuffer_ratio": 0.0, "abandoned": False, "completed": True, "segments": 10,
           "seek_wait_s": 0.0, "digest_failures": 0, "requests": 10, "answered": 10,
           "bytes_by_source": {"cache_prefetch": 600_000, "origin": 400_000}}
    rec.update(kw)
    return rec


def traffic(node, cls, direction, nbytes):
    return {"kind": "traffic", "node": node, "cls": cls, "direction": direction,
            "bytes": nbytes}


def test_empty_input_gives_empty_tables_with_columns():
    assert list(M.requests_table([]).columns) == M.REQUEST_COLUMNS
    assert list(M.viewers_table([]).columns) == M.VIEWER_COLUMNS
    assert list(M.traffic_table([]).columns) == M.TRAFFIC_COLUMNS
    tables = M.summary([])
    assert set(tables) == {"per_viewer", "overall", "by_source", "by_class"}
    assert len(tables["per_viewer"]) == 0
    row = tables["overall"].iloc[0]
    assert list(tables["overall"].columns) == M.OVERALL_COLUMNS
    assert row["requests"] == 0 and row["sessions"] == 0
    assert math.isnan(row["hit_ratio"]) and math.isnan(row["startup_p50_s"])
    assert math.isnan(row["byte_offload"]) and math.isnan(row["origin_bytes"])
    assert row["never_started"] == 0 and row["waiting_at_stop"] == 0
    assert list(tables["by_source"]["source"]) == list(M.REQUEST_SOURCES)
    assert (tables["by_source"]["requests"] == 0).all()
    assert list(tables["by_class"]["cls"]) == list(M.TRAFFIC_CLASSES)


def test_requests_table_from_serve_records_only():
    records = [serve("cache_prefetch"), {"kind": "qoe"}, "junk", None,
               {"kind": "serve", "node": "h2", "source": "origin"}]
    df = M.requests_table(records)
    assert list(df["helper"]) == ["h1", "h2"]
    assert df.loc[0, "bytes"] == 100_000 and df.loc[0, "latency_ms"] == pytest.approx(4.2)
    assert pd.isna(df.loc[1, "bytes"]) and pd.isna(df.loc[1, "index"])
    assert str(df["index"].dtype) == "Int64"


def test_viewers_table_spreads_bytes_by_source_and_keeps_extras():
    df = M.viewers_table([qoe("v1-0", bytes_by_source={"cache_mesh": 5, "weird": 7},
                              latency_p50_ms=3.0),
                          {"kind": "qoe", "node": "v2", "viewer": "v2-0"}])
    assert list(df.columns[:len(M.VIEWER_COLUMNS)]) == M.VIEWER_COLUMNS
    assert {"bytes_weird", "latency_p50_ms"} <= set(df.columns)
    first = df.iloc[0]
    assert first["bytes_cache_mesh"] == 5 and first["bytes_weird"] == 7
    assert first["bytes"] == 12 and first["bytes_origin"] == 0
    assert bool(first["completed"]) and not bool(first["abandoned"])
    second = df.iloc[1]
    assert pd.isna(second["startup_s"]) and pd.isna(second["completed"])


def test_summary_hit_ratio_offload_and_qoe():
    records = [
        serve("cache_prefetch"), serve("cache_prefetch"), serve("cache_tree"),
        serve("mesh"), serve("tree"), serve("origin", nbytes=300_000),
        qoe("v1-0", startup_s=1.0, stall_s=2.0, played_s=18.0, stalls=1, requests=4,
            answered=4),
        qoe("v1-1", startup_s=3.0, stall_s=0.0, played_s=20.0, requests=4, answered=3,
            digest_failures=1, completed=False, abandoned=True),
        qoe("v1-2", startup_s=None, played_s=0.0, requests=0, answered=0, completed=False,
            abandoned=True),
        traffic("h1", "mesh", "tx", 1000), traffic("h2", "mesh", "rx", 900),
        traffic("m", "control", "tx", 50), traffic("h1", "bulk", "tx", 5),
    ]
    t = M.summary(records)
    row = t["overall"].iloc[0]
    assert row["sessions"] == 3
    assert row["serves"] == 6
    assert row["requests"] == 8 and row["answered"] == 7 and row["digest_failures"] == 1
    assert row["hit_ratio"] == pytest.approx(3 / 8)     # three answers from caches
    assert row["prefetch_hits"] == 2
    # caches (3 x 100 kB) + mesh (100 kB) out of 800 kB to viewers; tree and origin are not
    assert row["serve_offload"] == pytest.approx(0.5)
    assert row["bytes_to_viewers"] == 800_000
    assert row["startup_p50_s"] == pytest.approx(2.0)
    assert row["startup_p95_s"] == pytest.approx(2.9)
    assert row["never_started"] == 1
    # v1-2 has no ``ended`` (an old log): abandoned before a first frame = out of patience
    assert row["abandoned_at_start"] == 1 and row["waiting_at_stop"] == 0
    assert row["rebuffer_ratio"] == pytest.approx(2.0 / 40.0)
    assert row["stalls"] == 1 and row["completed"] == 1 and row["abandoned"] == 2

    src = t["by_source"].set_index("source")
    assert src.loc["cache_prefetch", "requests"] == 2
    assert src.loc["origin", "bytes"] == 300_000
    assert src.loc["origin", "share_bytes"] == pytest.approx(0.375)
    assert src.loc["cache_live", "requests"] == 0
    assert src["requests"].sum() == 6

    cls = t["by_class"].set_index("cls")
    assert cls.loc["mesh", "tx_bytes"] == 1000 and cls.loc["mesh", "rx_bytes"] == 900
    assert cls.loc["control", "tx_bytes"] == 50 and cls.loc["bulk", "tx_bytes"] == 5
    assert cls.loc["tree", "tx_bytes"] == 0
    assert len(t["per_viewer"]) == 3


def test_hit_ratio_uses_serves_when_viewer_logs_are_missing():
    row = M.summary([serve("cache_mesh"), serve("origin")])["overall"].iloc[0]
    assert row["requests"] == 2 and row["answered"] == 2
    assert row["hit_ratio"] == pytest.approx(0.5)
    assert math.isnan(row["rebuffer_ratio"])


def test_unknown_sources_are_listed_and_cache_origin_counts_as_a_hit():
    t = M.summary([serve("cache_origin"), serve("carrier-pigeon")])
    assert {"cache_origin", "carrier-pigeon"} <= set(t["by_source"]["source"])
    row = t["overall"].iloc[0]
    assert row["hit_ratio"] == pytest.approx(0.5) and row["serve_offload"] == pytest.approx(0.5)


def test_summary_accepts_a_generator():
    t = M.summary(r for r in [serve("cache_tree"), qoe("v1-0")])
    assert t["overall"].iloc[0]["serves"] == 1 and len(t["per_viewer"]) == 1
