"""Prefetch, offload and per-interval tables from hand-made event records, and the run's
links, topology and prediction tables: which copy a serve used, what counts as offload,
which copies are judged, and that every bucket adds up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from testbed.core import metrics as M
from testbed.harness.results import (
    EMULATOR_COLUMNS,
    LINK_COLUMNS,
    PREDICTION_COLUMNS,
    emulator_figures,
    links_table,
    predictions_table,
    read_logs,
    topology_view,
)


def copy(at: float, node: str = "h2", index: int = 3, kept: bool = True, nbytes: int = 1000,
         push_id: int = 7, **kw) -> dict:
    """A pushed segment arriving at a helper (``mesh_rx``)."""
    return {"kind": "mesh_rx", "node": node, "at": at, "video": "v", "index": index,
            "push_id": push_id, "dest": True, "kept": kept, "bytes": nbytes, **kw}


def serve(at: float, source: str = "cache_prefetch", node: str = "h2", index: int = 3,
          nbytes: int = 1000, **kw) -> dict:
    return {"kind": "serve", "node": node, "viewer": "ab12", "video": "v", "index": index,
            "version": 1, "bytes": nbytes, "source": source, "latency_ms": 3.0, "at": at,
            **kw}


def push(at: float, nbytes: int = 1000) -> dict:
    return {"kind": "push", "at": at, "bytes": nbytes, "video": "v", "index": 3,
            "helpers": ["h2"]}


def used(records: list[dict]) -> list[tuple[float, bool, float | None]]:
    """Per copy, in order: when it arrived, whether it was used, first use (None: never)."""
    t = M.prefetch_copies(records)
    return [(a, bool(u), None if math.isnan(f) else f)
            for a, u, f in zip(t["at"], t["used"], t["first_use_at"])]


# -- prefetch copies ---------------------------------------------------------------------------

def test_a_copy_is_used_by_a_prefetch_serve_after_it_arrived():
    t = M.prefetch_copies([copy(10.0), serve(12.5), serve(14.0)])
    assert list(t.columns) == M.COPY_COLUMNS and len(t) == 1
    row = t.iloc[0]
    assert (row["push_id"], row["helper"], row["video"], row["index"]) == (7, "h2", "v", 3)
    assert bool(row["used"]) and row["first_use_at"] == 12.5 and bool(row["dest"])


def test_a_serve_before_the_copy_does_not_count():
    assert used([serve(9.0), copy(10.0)]) == [(10.0, False, None)]


@pytest.mark.parametrize("other", [
    serve(12.0, source="cache_tree"), serve(12.0, source="tree"), serve(12.0, source="mesh"),
    serve(12.0, node="h3"), serve(12.0, index=4)])
def test_only_a_prefetch_serve_of_that_segment_at_that_helper_counts(other):
    assert used([copy(10.0), other]) == [(10.0, False, None)]


def test_a_serve_belongs_to_the_latest_copy_before_it():
    two = [copy(10.0, push_id=1), copy(20.0, push_id=2)]
    assert used(two + [serve(15.0)]) == [(10.0, True, 15.0), (20.0, False, None)]
    assert used(two + [serve(25.0)]) == [(10.0, False, None), (20.0, True, 25.0)]
    assert used(two + [serve(25.0), serve(12.0), serve(22.0)]) == [
        (10.0, True, 12.0), (20.0, True, 22.0)]
    # records in any order
    assert used([serve(22.0), copy(20.0), serve(12.0), copy(10.0)]) == [
        (10.0, True, 12.0), (20.0, True, 22.0)]


def test_copies_not_kept_are_ignored():
    t = M.prefetch_copies([copy(10.0, kept=False), copy(11.0, node="h3"), serve(12.0)])
    assert list(t["helper"]) == ["h3"] and not t["used"].any()
    # the copy not kept does not end the kept one's window either
    assert used([copy(10.0), copy(11.0, kept=False), serve(12.0)]) == [(10.0, True, 12.0)]


def test_no_copies_gives_the_columns():
    t = M.prefetch_copies([serve(1.0), push(0.5)])
    assert list(t.columns) == M.COPY_COLUMNS and len(t) == 0


# -- offload -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "root", "spared"), [
    ("tree", "cache", True),
    ("tree", "origin", False),
    ("tree", None, False),
    ("mesh", None, True),
    ("mesh", "origin", True),
    ("cache_tree", None, True),
    ("cache_prefetch", "origin", True),
    ("origin", None, False),
])
def test_offloaded(source, root, spared):
    rec = serve(1.0, source=source)
    if root is not None:
        rec["root"] = root
    got = M.offloaded(M.requests_table([rec]))
    assert got.dtype == bool and list(got) == [spared]


def test_offloaded_of_no_requests_is_empty():
    got = M.offloaded(M.requests_table([]))
    assert got.dtype == bool and len(got) == 0


# -- prefetch precision and waste ----------------------------------------------------------------

def test_outcome_judges_only_copies_before_the_settle_window():
    records = [copy(10.0, nbytes=1000, push_id=1), serve(12.0),
               copy(20.0, node="h3", nbytes=3000, push_id=2),
               copy(56.0, node="h4", nbytes=5000, push_id=3),  # in the last settle_s
               serve(57.0, node="h4")]
    out = M.prefetch_outcome(M.prefetch_copies(records), end_at=60.0, settle_s=5.0)
    assert out == {"prefetch_copies": 3, "prefetch_copies_judged": 2,
                   "prefetch_copies_used": 1, "prefetch_precision": 0.5,
                   "prefetch_waste": pytest.approx(3000 / 4000)}


def test_outcome_counts_a_copy_right_at_the_boundary():
    copies = M.prefetch_copies([copy(55.0)])
    assert M.prefetch_outcome(copies, end_at=60.0, settle_s=5.0)["prefetch_copies_judged"] == 1


@pytest.mark.parametrize("records", [[], [copy(58.0), serve(59.0)]])
def test_outcome_with_nothing_judged_is_nan(records):
    out = M.prefetch_outcome(M.prefetch_copies(records), end_at=60.0, settle_s=5.0)
    assert out["prefetch_copies_judged"] == 0 and out["prefetch_copies_used"] == 0
    assert math.isnan(out["prefetch_precision"]) and math.isnan(out["prefetch_waste"])
    assert out["prefetch_copies"] == len(records) // 2


# -- intervals ---------------------------------------------------------------------------------

def test_intervals_add_up_to_the_totals():
    records = [
        copy(1.0, push_id=1), serve(2.0), serve(3.0, source="tree", root="origin"),
        push(0.5), push(0.9, 500),
        serve(11.0, source="tree", root="cache", nbytes=2000),
        serve(12.0, source="origin", nbytes=4000), serve(13.0, source="cache_tree"),
        copy(15.0, node="h3", push_id=2), push(14.0, 700),
        serve(30.0, source="mesh"),  # right at end_at: the last bucket
    ]
    t = M.intervals_table(records, step_s=10.0, end_at=30.0)
    assert list(t.columns) == M.INTERVAL_COLUMNS
    assert list(t["t"]) == [0.0, 10.0, 20.0]
    assert list(t["requests"]) == [2, 3, 1]
    assert list(t["hits"]) == [1, 1, 0]
    assert list(t["bytes"]) == [2000, 7000, 1000]
    assert list(t["serve_offload_bytes"]) == [1000, 3000, 1000]
    assert list(t["pushes"]) == [2, 1, 0] and list(t["push_bytes"]) == [1500, 700, 0]
    assert list(t["copies"]) == [1, 1, 0] and list(t["copies_used"]) == [1, 0, 0]
    requests = M.requests_table(records)
    assert t["requests"].sum() == len(requests)
    assert t["hits"].sum() == requests["source"].map(M.is_cache_source).sum()
    assert t["bytes"].sum() == requests["bytes"].sum()
    assert t["serve_offload_bytes"].sum() == requests.loc[M.offloaded(requests), "bytes"].sum()
    assert t["pushes"].sum() == 3 and t["copies"].sum() == len(M.prefetch_copies(records))
    assert list(t["hit_ratio"]) == pytest.approx([1 / 2, 1 / 3, 0.0])
    assert list(t["serve_offload"]) == pytest.approx([0.5, 3 / 7, 1.0])
    assert list(t["push_precision"][:2]) == [1.0, 0.0] and math.isnan(t["push_precision"][2])


def test_interval_ratios_are_nan_where_nothing_happened():
    t = M.intervals_table([serve(1.0)], step_s=5.0, end_at=15.0)
    assert list(t["requests"]) == [1, 0, 0]
    assert t["hit_ratio"][0] == 1.0 and t["hit_ratio"][1:].isna().all()
    assert t["serve_offload"][1:].isna().all() and t["push_precision"].isna().all()


def test_intervals_of_no_records_have_the_columns():
    t = M.intervals_table([], step_s=5.0, end_at=20.0)
    assert list(t.columns) == M.INTERVAL_COLUMNS and len(t) == 4
    assert (t[["requests", "hits", "bytes", "pushes", "copies"]] == 0).all().all()
    assert t["hit_ratio"].isna().all()
    assert len(M.intervals_table([], step_s=5.0, end_at=0.0)) == 1


def test_intervals_need_a_positive_step():
    with pytest.raises(ValueError, match="step_s"):
        M.intervals_table([], step_s=0, end_at=10.0)


# -- links -------------------------------------------------------------------------------------

@pytest.fixture
def spec() -> nx.Graph:
    g = nx.Graph()
    g.add_node("s1", role="switch")
    g.add_node("s2", role="switch")
    g.add_node("h1", role="helper")
    g.add_edge("s1", "s2", delay_ms=5.0, bw_mbit=10.0)
    g.add_edge("s2", "h1", delay_ms=1.0, bw_mbit=100.0)
    g.add_edge("s1", "h1", delay_ms=2.0, bw_mbit=None)
    return g


def by_pair(t: pd.DataFrame) -> dict:
    return {frozenset((r["a"], r["b"])): r for _, r in t.iterrows()}


def test_links_table_orients_bytes_by_the_ports_owner(spec):
    ports = {("s2", "s1"): "s2-eth1", ("h1", "s2"): "h1-eth0", ("s1", "h1"): "s1-eth3"}
    counters = {"s2-eth1": (2_500_000, 500_000), "h1-eth0": (100_000, 1_250_000),
                "s1-eth3": (40_000, 0)}
    t = links_table(spec, counters, ports, seconds=10.0)
    assert list(t.columns) == LINK_COLUMNS and len(t) == 3
    rows = by_pair(t)
    core = rows[frozenset(("s1", "s2"))]
    assert (core["a"], core["b"], core["bytes_ab"], core["bytes_ba"]) == (
        "s2", "s1", 2_500_000, 500_000)
    assert (core["delay_ms"], core["bw_mbit"]) == (5.0, 10.0)
    assert core["utilisation"] == pytest.approx(2_500_000 * 8 / 10 / 10e6)
    access = rows[frozenset(("s2", "h1"))]
    assert (access["a"], access["b"], access["bytes_ab"], access["bytes_ba"]) == (
        "h1", "s2", 100_000, 1_250_000)
    assert access["utilisation"] == pytest.approx(1_250_000 * 8 / 10 / 100e6)  # busier way
    unlimited = rows[frozenset(("s1", "h1"))]
    assert unlimited["bytes_ab"] == 40_000 and math.isnan(unlimited["utilisation"])


def test_links_without_counters_are_nan(spec):
    ports = {("s1", "s2"): "s1-eth1", ("s2", "h1"): "s2-eth2"}  # s1-h1 has no port
    t = links_table(spec, {"s1-eth1": (8000, 4000)}, ports, seconds=10.0)
    rows = by_pair(t)
    assert rows[frozenset(("s1", "s2"))]["bytes_ab"] == 8000
    for pair in (("s2", "h1"), ("s1", "h1")):
        row = rows[frozenset(pair)]
        assert pd.isna(row["bytes_ab"]) and pd.isna(row["bytes_ba"])
        assert pd.isna(row["utilisation"])
    nothing = links_table(spec, {}, {}, seconds=10.0)
    assert nothing[["bytes_ab", "bytes_ba", "utilisation"]].isna().all().all()


# -- topology view -------------------------------------------------------------------------------

def test_topology_view_takes_the_last_tiers_routes_and_neighbours():
    g = nx.Graph()
    g.add_node("s1")
    for name, role in (("m1", "master"), ("h1", "helper"), ("h2", "helper"),
                       ("h3", "helper")):
        g.add_node(name, role=role)
        g.add_edge(name, "s1", delay_ms=1.0, bw_mbit=20.0)
    records = [
        {"kind": "tiers", "at": 5.0, "tiers": [["h1", "h2", "h3"]]},
        {"kind": "routing", "node": "h1", "parent": "m1", "tier": 1},
        {"kind": "routing", "node": "h2", "parent": "m1", "tier": 1},
        {"kind": "routing", "node": "h3", "parent": "m1", "tier": 1},
        {"kind": "neighbours", "node": "h3", "neighbours": ["h1"]},
        {"kind": "tiers", "at": 10.0, "tiers": [["h1"], ["h2", "h3"]]},
        {"kind": "routing", "node": "h3", "parent": "h1", "tier": 2},
        {"kind": "routing", "node": "h2", "parent": "h1", "tier": 2},
        {"kind": "neighbours", "node": "h1", "neighbours": ["h3", "h2"]},
        {"kind": "neighbours", "node": "h2", "neighbours": ["h1"]},
        {"kind": "neighbours", "node": "h3", "neighbours": ["h2", "h1"]},
        {"kind": "serve", "node": "h1", "at": 11.0},
    ]
    view = topology_view(g, records)
    nodes = {n["name"]: (n["role"], n["tier"]) for n in view["nodes"]}
    assert nodes == {"s1": ("switch", None), "m1": ("master", None), "h1": ("helper", 1),
                     "h2": ("helper", 2), "h3": ("helper", 2)}
    assert view["tree"] == [["h1", "h2"], ["h1", "h3"], ["m1", "h1"]]
    assert view["mesh"] == [["h1", "h2"], ["h1", "h3"], ["h2", "h3"]]
    assert len(view["links"]) == 4
    assert {frozenset((x["a"], x["b"])) for x in view["links"]} == {
        frozenset(("s1", n)) for n in ("m1", "h1", "h2", "h3")}
    assert all((x["delay_ms"], x["bw_mbit"]) == (1.0, 20.0) for x in view["links"])
    json.dumps(view)  # plain data


def test_topology_view_of_no_records():
    g = nx.Graph()
    g.add_edge("h1", "s1")
    view = topology_view(g, [])
    assert view["tree"] == [] and view["mesh"] == []
    assert all(n["tier"] is None for n in view["nodes"])


# -- predictions -------------------------------------------------------------------------------

def model(trained_at: float, until: float | None, precision: float = 0.62) -> dict:
    m = {"version": 1, "trained_at": trained_at, "features": ["a", "b"], "rows": 1200}
    if until is not None:
        m["evaluation"] = {"until": until,
                           "model": {"precision": precision, "recall": 0.44, "mae": 0.157},
                           "playhead": {"precision": 0.61, "mae": 0.155}}
    return m


def write_models(out: Path, models: dict[str, dict]) -> None:
    d = out / "engine" / "models"
    d.mkdir(parents=True)
    for name, m in models.items():
        (d / name).write_text(json.dumps(m))


def test_predictions_table_one_row_per_scored_model(tmp_path):
    write_models(tmp_path, {"model-v0001.json": model(49.8, 80.5),
                            "model-v0002.json": model(80.5, 110.0, precision=0.7),
                            "model-v0003.json": model(110.0, None)})  # not scored yet
    t = predictions_table(tmp_path)
    assert list(t.columns) == PREDICTION_COLUMNS
    assert list(t["version"]) == [1, 2]
    first = t.iloc[0].to_dict()
    assert first == {"version": 1, "trained_at": 49.8, "scored_from": 49.8, "scored_to": 80.5,
                     "precision": 0.62, "recall": 0.44, "mae": 0.157,
                     "playhead_precision": 0.61, "playhead_mae": 0.155}
    assert (t.iloc[1]["scored_from"], t.iloc[1]["scored_to"]) == (80.5, 110.0)
    assert t.iloc[1]["precision"] == 0.7


def test_predictions_table_skips_torn_files_and_has_columns_without_models(tmp_path):
    assert list(predictions_table(tmp_path).columns) == PREDICTION_COLUMNS
    write_models(tmp_path, {"model-v0001.json": model(49.8, 80.5)})
    (tmp_path / "engine" / "models" / "model-v0002.json").write_text('{"trained_at": 8')
    t = predictions_table(tmp_path)
    assert list(t["version"]) == [1]


def _lane(frames: int, sent: int, overflow: int = 0, overdue: int = 0,
          p99: float | None = 50.0) -> dict:
    return {"lane": "a-b:ab", "packets_in": frames, "sent": sent, "overflow": overflow,
            "overdue": overdue, "lateness_us": {"p50": 10.0, "p99": p99, "max_bucket": 900.0}}


def test_the_emulator_counters_add_up_over_lanes_and_take_the_worst_tail():
    stats = {"pid": 1, "lanes": [_lane(1000, 990, overflow=10, overdue=3, p99=70.0),
                                 _lane(3000, 3000, overdue=1, p99=1400.0),
                                 _lane(0, 0, p99=None)]}
    got = emulator_figures(stats)
    assert set(got) == set(EMULATOR_COLUMNS)
    assert got["emu_frames"] == 4000 and got["emu_overflow"] == 10
    assert got["emu_overdue"] == 4
    assert got["emu_overdue_ppm"] == pytest.approx(1e6 * 4 / 3990, abs=0.1)
    assert got["emu_late_p99_us"] == 1400.0


@pytest.mark.parametrize("stats", [None, {}, {"pid": 1, "lanes": []}])
def test_without_an_emulator_the_columns_are_there_and_empty(stats):
    assert emulator_figures(stats) == dict.fromkeys(EMULATOR_COLUMNS)


def test_read_logs_keeps_every_whole_record_and_skips_what_is_torn(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "h1.jsonl").write_text('{"kind": "a", "at": 1}\n{"kind": "b", "at": 2}\n')
    (logs / "h2.jsonl").write_text('{"kind": "c", "at": 3}\n[1, 2]\n\n{"kind": "d", "at"')
    (logs / "m1.jsonl").write_text("")
    got = read_logs(tmp_path)
    assert [r["kind"] for r in got] == ["a", "b", "c"]
    one, two = got[:2]
    assert [id(k) for k in one] == [id(k) for k in two]  # a log's records share their keys
