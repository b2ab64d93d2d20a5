"""Costed delivery figures from hand-made event records: origin egress and its peak, byte
offload (which can go negative), byte-hops, pushes as their own traffic class, copies
used onward, sessions that never start, and the warm-up left out of the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from testbed.core import metrics as M
from testbed.harness.results import write_results

MBIT = 125_000  # bytes in one megabit


def egress(at: float, node: str = "m1", **by_cls: int) -> dict:
    return {"kind": "egress", "node": node, "at": at, "by_cls": by_cls}


def serve(at: float, source: str = "origin", nbytes: int = 1000, node: str = "h1",
          index: int = 3, **kw) -> dict:
    return {"kind": "serve", "node": node, "viewer": "ab12", "video": "v", "index": index,
            "version": 1, "bytes": nbytes, "source": source, "latency_ms": 3.0, "at": at,
            **kw}


def onward(at: float, source: str = "cache_prefetch", node: str = "h2", index: int = 3,
           to: str = "h5") -> dict:
    """A helper answering another helper's tree or mesh fetch."""
    return {"kind": "upstream_serve", "node": node, "at": at, "to": to, "video": "v",
            "index": index, "version": 1, "source": source, "bytes": 1000, "cls": "mesh"}


def copy(at: float, node: str = "h2", index: int = 3, nbytes: int = 1000,
         push_id: str = "p1", kept: bool = True) -> dict:
    return {"kind": "mesh_rx", "node": node, "at": at, "sender": "m1", "video": "v",
            "index": index, "version": 1, "push_id": push_id, "dest": True, "kept": kept,
            "bytes": nbytes}


def qoe(viewer: str, **kw) -> dict:
    rec = {"kind": "qoe", "node": "v1", "at": 50.0, "viewer": viewer, "video": "v",
           "joined_at": 20.0, "startup_s": 1.0, "stalls": 0, "stall_s": 0.0,
           "played_s": 10.0, "rebuffer_ratio": 0.0, "abandoned": False, "completed": True,
           "segments": 4, "seek_wait_s": 0.0, "digest_failures": 0, "requests": 4,
           "answered": 4, "ended": True, "bytes_by_source": {"origin": 4000}}
    rec.update(kw)
    return rec


def traffic(node: str, cls: str, nbytes: int, direction: str = "tx") -> dict:
    return {"kind": "traffic", "node": node, "at": 60.0, "cls": cls, "direction": direction,
            "bytes": nbytes}


def overall(records: list[dict], warmup_s: float = 0.0) -> pd.Series:
    return M.summary(records, warmup_s)["overall"].iloc[0]


# -- origin egress -----------------------------------------------------------------------------

def test_egress_table_intervals_and_classes():
    t = M.egress_table([egress(2.0, origin=300, prefetch=50),
                        egress(1.0, origin=100, live=20, weird=5, junk="x"),
                        egress(3.5, control=7), {"kind": "egress", "node": "m1", "at": 4.0}])
    assert list(t.columns) == M.EGRESS_COLUMNS + ["bytes_weird"]
    assert list(t["at"]) == [1.0, 2.0, 3.5, 4.0]
    assert list(t["since"]) == [0.0, 1.0, 2.0, 3.5]       # the first covers one period
    assert list(t["bytes"]) == [125, 350, 7, 0]
    assert list(t["bytes_prefetch"]) == [0, 50, 0, 0] and list(t["bytes_weird"]) == [5, 0, 0, 0]
    assert not t["warmup"].any()
    empty = M.egress_table([])
    assert list(empty.columns) == M.EGRESS_COLUMNS and len(empty) == 0


def test_origin_counts_every_class_and_byte_offload_is_one_minus_its_share():
    records = [egress(1.0, origin=2000, control=100), egress(2.0, prefetch=1500, live=400),
               serve(1.5, nbytes=4000), serve(1.6, source="cache_prefetch", nbytes=6000)]
    row = overall(records)
    assert row["origin_bytes"] == 4000 and row["origin_push_bytes"] == 1500
    assert row["bytes_to_viewers"] == 10_000
    assert row["origin_per_viewer_byte"] == pytest.approx(0.4)
    assert row["byte_offload"] == pytest.approx(0.6)
    # the served-request view does not see the push that put the copy there
    assert row["serve_offload"] == pytest.approx(0.6)


def test_byte_offload_goes_negative_when_the_origin_sent_more_than_viewers_got():
    records = [egress(1.0, prefetch=30_000, origin=5000), serve(1.2, nbytes=10_000)]
    row = overall(records)
    assert row["origin_per_viewer_byte"] == pytest.approx(3.5)
    assert row["byte_offload"] == pytest.approx(-2.5)


def test_origin_without_egress_records_or_viewer_bytes_is_nan():
    row = overall([serve(1.0)])                       # logs from before egress records
    for c in ("origin_bytes", "origin_push_bytes", "origin_per_viewer_byte", "byte_offload",
              "origin_peak_mbit"):
        assert math.isnan(row[c]), c
    row = overall([egress(1.0, origin=10)])           # the origin sent, nobody watched
    assert row["origin_bytes"] == 10 and math.isnan(row["byte_offload"])


def test_origin_peak_is_the_p95_of_per_second_rates():
    # second k (k = 0..19) at k + 1 Mbit/s: p95 of 1..20 = 19 + 0.05 * (20 - 19)
    records = [egress(k + 1.0, origin=(k + 1) * MBIT) for k in range(20)]
    row = overall(records)
    assert row["origin_peak_mbit"] == pytest.approx(19.05)
    assert row["origin_bytes"] == sum(range(1, 21)) * MBIT


def test_origin_peak_is_not_fooled_by_jitter_in_the_record_times():
    # a steady 8 Mbit/s logged at uneven times: each record holds what its interval saw;
    # bucketed by the second a record fell in, seconds would read 0 and 16 Mbit/s
    times = [1.0, 1.98, 3.01, 3.99, 5.02, 6.0, 6.97, 8.03, 9.0]
    records = [egress(times[0], origin=8 * MBIT)] + [
        egress(b, origin=round(8 * MBIT * (b - a))) for a, b in zip(times, times[1:])]
    rate = M.origin_rate(M.egress_table(records)) * 8 / 1e6
    assert list(rate.index) == list(range(9))
    assert list(rate) == pytest.approx([8.0] * 9, abs=1e-3)
    assert overall(records)["origin_peak_mbit"] == pytest.approx(8.0, abs=1e-3)


def test_origin_rate_counts_idle_seconds_while_running_and_nothing_outside():
    # running over (9, 14]; nothing sent in (10, 13]; a late record covers two seconds
    records = [egress(10.0, node="m1", origin=4 * MBIT), egress(11.0, origin=0),
               egress(13.0, origin=0), egress(14.0, origin=2 * MBIT)]
    rate = M.origin_rate(M.egress_table(records)) * 8 / 1e6
    assert dict(rate) == pytest.approx({9.0: 4.0, 10.0: 0.0, 11.0: 0.0, 12.0: 0.0,
                                        13.0: 2.0})
    # p95 over those five seconds: 2 + 0.8 * (4 - 2)
    assert overall(records)["origin_peak_mbit"] == pytest.approx(3.6)


def test_a_record_over_a_longer_interval_is_spread_over_its_seconds():
    records = [egress(1.0, origin=MBIT), egress(4.0, origin=6 * MBIT)]   # (1, 4]: 2 Mbit/s
    rate = M.origin_rate(M.egress_table(records)) * 8 / 1e6
    assert list(rate) == pytest.approx([1.0, 2.0, 2.0, 2.0])


def test_the_last_partial_interval_gives_its_own_rate():
    records = [egress(1.0, origin=MBIT), egress(1.5, origin=MBIT)]      # 0.5 s at 2 Mbit/s
    rate = M.origin_rate(M.egress_table(records)) * 8 / 1e6
    assert list(rate.index) == [0.0, 1.0] and list(rate) == pytest.approx([1.0, 2.0])


# -- intervals ---------------------------------------------------------------------------------

def test_intervals_carry_the_origin_series_and_its_byte_offload():
    records = [egress(k + 1.0, origin=1000) for k in range(12)]        # 1000 B/s over (0, 12]
    records += [egress(5.5, prefetch=0)]                                # splits (5, 6]
    records += [serve(2.0, nbytes=10_000), serve(7.0, nbytes=2500)]
    t = M.intervals_table(records, step_s=5.0, end_at=10.0)
    assert list(t.columns) == M.INTERVAL_COLUMNS
    assert list(t["origin"]) == pytest.approx([5000.0, 7000.0])   # the last takes (10, 12]
    assert t["origin"].sum() == pytest.approx(M.egress_table(records)["bytes"].sum())
    assert list(t["byte_offload"]) == pytest.approx([0.5, 1 - 7000 / 2500])
    assert list(t["serve_offload"]) == [0.0, 0.0]
    without = M.intervals_table([serve(2.0)], step_s=5.0, end_at=10.0)
    assert without["origin"].isna().all() and without["byte_offload"].isna().all()


# -- byte-hops and traffic classes ---------------------------------------------------------------

def links(*pairs: tuple) -> pd.DataFrame:
    return pd.DataFrame([{"a": f"s{i}", "b": f"h{i}", "bytes_ab": ab, "bytes_ba": ba}
                         for i, (ab, ba) in enumerate(pairs)])


def test_byte_hops_sum_both_directions_of_every_link():
    got = M.byte_hops(links((1000, 200), (3000, 0)), viewer_bytes=2100)
    assert got == {"byte_hops": 4200, "byte_hops_per_viewer_byte": pytest.approx(2.0)}
    assert math.isnan(M.byte_hops(links((1000, 200)), 0)["byte_hops_per_viewer_byte"])


@pytest.mark.parametrize("table", [None, links(), links((1000, 200), (None, 5))])
def test_byte_hops_without_a_full_count_are_nan(table):
    got = M.byte_hops(table, viewer_bytes=1000)
    assert math.isnan(got["byte_hops"]) and math.isnan(got["byte_hops_per_viewer_byte"])


def test_pushes_are_their_own_class_beside_the_overhead():
    records = [traffic("h1", "viewer", 10_000), traffic("h2", "viewer", 10_000),
               traffic("h1", "telemetry", 100), traffic("m1", "control", 200),
               traffic("engine", "prediction", 100), traffic("m1", "prefetch", 6000),
               traffic("h1", "prefetch", 3000), traffic("h1", "prefetch", 9000, "rx"),
               traffic("m1", "origin", 50_000),
               copy(1.0, push_id="a"), copy(1.1, node="h3", push_id="a", kept=False),
               copy(30.0, push_id="b", index=4), serve(31.0, nbytes=8000)]
    row = overall(records)
    assert row["overhead_ratio"] == pytest.approx(400 / 20_000)       # pushes left out
    assert row["push_hop_bytes"] == 9000                                # every hop, tx only
    assert row["push_ratio"] == pytest.approx(9000 / 20_000)
    assert row["push_hop_bytes_after_warmup"] == 3000                   # three hops seen
    assert row["push_ratio_after_warmup"] == pytest.approx(3000 / 8000)
    later = overall(records, warmup_s=10.0)
    assert later["push_hop_bytes"] == 9000                              # totals: whole run
    assert later["push_hop_bytes_after_warmup"] == 1000


def test_traffic_figures_are_nan_without_traffic_records():
    row = overall([serve(1.0)])
    assert math.isnan(row["overhead_ratio"]) and math.isnan(row["push_ratio"])
    assert math.isnan(row["push_hop_bytes"])
    assert row["push_hop_bytes_after_warmup"] == 0


# -- copies used onward --------------------------------------------------------------------------

def uses(records: list[dict]) -> list[tuple[bool, float | None, str | None]]:
    t = M.prefetch_copies(records)
    return [(bool(u), None if math.isnan(f) else f, w if isinstance(w, str) else None)
            for u, f, w in zip(t["used"], t["first_use_at"], t["use"])]


def test_a_copy_served_only_onward_counts_as_used():
    assert uses([copy(10.0), onward(12.0)]) == [(True, 12.0, "onward")]


def test_a_copy_served_to_nobody_is_not_used():
    assert uses([copy(10.0), onward(9.0), onward(12.0, source="cache_tree"),
                 onward(12.0, node="h3"), onward(12.0, index=4),
                 serve(12.0, source="cache_prefetch", node="h3")]) == [(False, None, None)]


def test_the_first_use_of_either_kind_is_recorded():
    assert uses([copy(10.0), serve(14.0, source="cache_prefetch", node="h2"),
                 onward(12.0)]) == [(True, 12.0, "onward")]
    assert uses([copy(10.0), serve(12.0, source="cache_prefetch", node="h2"),
                 onward(14.0)]) == [(True, 12.0, "viewer")]
    assert uses([copy(10.0), serve(12.0, source="cache_prefetch", node="h2"),
                 onward(12.0)]) == [(True, 12.0, "viewer")]


def test_an_onward_use_after_the_next_copy_belongs_to_the_next_copy():
    two = [copy(10.0, push_id="p1"), copy(20.0, push_id="p2")]
    assert uses(two + [onward(25.0)]) == [(False, None, None), (True, 25.0, "onward")]
    assert uses(two + [onward(15.0), serve(22.0, source="cache_prefetch", node="h2")]) == [
        (True, 15.0, "onward"), (True, 22.0, "viewer")]


def test_precision_and_waste_count_onward_uses():
    records = [copy(10.0, push_id="a", nbytes=1000), onward(11.0),
               copy(10.0, node="h3", push_id="b", nbytes=3000)]
    out = M.prefetch_outcome(M.prefetch_copies(records), end_at=60.0, settle_s=10.0)
    assert out["prefetch_copies_used"] == 1 and out["prefetch_precision"] == 0.5
    assert out["prefetch_waste"] == pytest.approx(0.75)


# -- start-up --------------------------------------------------------------------------------

def test_start_states_from_new_fields():
    v = M.viewers_table([
        qoe("started", asked_at=19.0, startup_s=1.5),
        qoe("waiting", asked_at=45.0, startup_s=None, ended=False, completed=False),
        qoe("patience", asked_at=30.0, startup_s=None, abandoned=True, completed=False,
            abandoned_at_start=True),
        qoe("failed", asked_at=30.0, startup_s=None, completed=False,
            abandoned_at_start=False),
    ])
    assert list(M.start_state(v)) == ["started", "waiting", "abandoned", "failed"]
    assert list(v["asked_at"]) == [19.0, 45.0, 30.0, 30.0]
    row = overall([qoe("a", startup_s=1.0), qoe("b", startup_s=3.0),
                   qoe("w", startup_s=None, ended=False, completed=False),
                   qoe("p", startup_s=None, abandoned=True, completed=False,
                       abandoned_at_start=True),
                   qoe("f", startup_s=None, completed=False, abandoned_at_start=False)])
    assert (row["never_started"], row["abandoned_at_start"], row["waiting_at_stop"]) == (
        2, 1, 1)
    assert row["startup_p50_s"] == pytest.approx(2.0)
    assert row["startup_p95_s"] == pytest.approx(2.9)
    assert row["sessions"] == 5


def test_start_states_from_old_logs():
    def old(viewer: str, **kw) -> dict:
        rec = qoe(viewer, **kw)
        del rec["ended"]
        return rec

    # no ``ended``: every session without a first frame never started (nothing censored)
    row = overall([old("w", startup_s=None, completed=False),
                   old("p", startup_s=None, abandoned=True, completed=False)])
    assert (row["never_started"], row["abandoned_at_start"], row["waiting_at_stop"]) == (
        2, 1, 0)
    # ``ended`` but no ``abandoned_at_start``: abandoned before a first frame = patience
    row = overall([qoe("w", startup_s=None, ended=False, completed=False),
                   qoe("p", startup_s=None, abandoned=True, completed=False),
                   qoe("f", startup_s=None, completed=False),
                   qoe("s", startup_s=0.5, abandoned=True, completed=False)])
    assert (row["never_started"], row["abandoned_at_start"], row["waiting_at_stop"]) == (
        2, 1, 1)
    assert row["abandoned"] == 2


# -- warm-up -------------------------------------------------------------------------------------

def run_records() -> list[dict]:
    """Ten seconds of warm-up worth leaving out, then the run proper."""
    return [
        # before: origin answers and a push, a session that started slowly, its requests
        egress(1.0, origin=9000), egress(2.0, prefetch=1000, origin=1000),
        serve(1.5, nbytes=5000), serve(2.5, source="cache_prefetch", node="h2", nbytes=5000),
        copy(1.0, push_id="early"),
        {"kind": "push", "node": "m1", "at": 0.9, "push_id": "early", "video": "v",
         "index": 3, "dest": "h2", "bytes": 1000},
        qoe("early", asked_at=0.5, joined_at=0.8, startup_s=5.0, requests=2, answered=2),
        # a session asked for before the warm-up ended though it joined after it
        qoe("straddle", asked_at=9.0, joined_at=10.5, startup_s=4.0, requests=1, answered=1),
        # after (the master sent nothing in (2, 10])
        egress(10.0, origin=0), egress(11.0, origin=3000, prefetch=1000), egress(12.0, live=500),
        serve(11.5, nbytes=2000), serve(12.5, source="cache_prefetch", node="h2", nbytes=2000),
        copy(11.0, push_id="late", index=4), onward(11.8, index=4),
        {"kind": "push", "node": "m1", "at": 10.9, "push_id": "late", "video": "v",
         "index": 4, "dest": "h2", "bytes": 1000},
        qoe("late", asked_at=None, joined_at=10.2, startup_s=0.5, requests=2, answered=2),
    ]


def test_the_summary_leaves_out_the_warm_up():
    records = run_records()
    row = overall(records, warmup_s=10.0)
    assert row["warmup_s"] == 10.0
    assert row["serves"] == 2 and row["bytes_to_viewers"] == 4000
    assert row["hit_ratio"] == pytest.approx(0.5) and row["prefetch_hits"] == 1
    assert row["origin_bytes"] == 4500 and row["origin_push_bytes"] == 1000
    assert row["byte_offload"] == pytest.approx(1 - 4500 / 4000)
    assert row["origin_peak_mbit"] == pytest.approx(4000 * 8 / 1e6 * 0.95 + 500 * 8 / 1e6
                                                    * 0.05)
    assert row["sessions"] == 1 and row["startup_p95_s"] == pytest.approx(0.5)
    everything = overall(records)
    assert everything["warmup_s"] == 0.0
    assert everything["serves"] == 4 and everything["origin_bytes"] == 15_500
    assert everything["sessions"] == 3 and everything["startup_p50_s"] == pytest.approx(4.0)


def test_tables_keep_the_warm_up_rows_flagged():
    records = run_records()
    tables = M.event_tables(records, warmup_s=10.0)
    assert list(tables["requests"]["warmup"]) == [True, True, False, False]
    assert dict(zip(tables["viewers"]["viewer"], tables["viewers"]["warmup"])) == {
        "early": True, "straddle": True, "late": False}
    assert list(tables["egress"]["warmup"]) == [True, True, True, False, False]
    assert list(tables["copies"]["warmup"]) == [True, False]
    assert list(tables["copies"]["use"]) == ["viewer", "onward"]
    t = M.intervals_table(records, step_s=5.0, end_at=15.0, warmup_s=10.0)
    assert list(t["warmup"]) == [True, True, False]
    assert list(t["requests"]) == [2, 0, 2]                    # every row still counted
    out = M.prefetch_outcome(tables["copies"], end_at=60.0, settle_s=5.0)
    assert out["prefetch_copies"] == 1 and out["prefetch_precision"] == 1.0


def test_an_egress_record_belongs_to_the_time_it_covers():
    # written at 10.2 for (9.2, 10.2]: mostly warm-up; the next, (10.2, 11.2], is not
    t = M.egress_table([egress(9.2, origin=1), egress(10.2, origin=1),
                        egress(11.2, origin=1)], warmup_s=10.0)
    assert list(t["warmup"]) == [True, True, False]


def test_a_warm_up_of_zero_leaves_nothing_out():
    rows = M.event_tables([serve(-0.5), egress(-0.2, control=100)], warmup_s=0.0)
    assert not rows["requests"]["warmup"].any() and not rows["egress"]["warmup"].any()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_warm_up_must_be_a_finite_number_of_seconds(bad):
    with pytest.raises(ValueError, match="warmup_s"):
        M.summary([], warmup_s=bad)


def test_viewer_requests_are_counted_by_their_time():
    asks = [{"kind": "request", "node": "v1", "at": at, "player": "p", "video": "v",
             "index": i, "digest_ok": ok} for i, (at, ok) in enumerate(
                 [(5.0, True), (11.0, True), (12.0, False)])]
    asks.append({"kind": "request_failed", "node": "v1", "at": 13.0, "player": "p",
                 "video": "v", "index": 9})
    records = asks + [serve(5.0), serve(11.0), serve(12.0),
                      qoe("p", asked_at=4.0, requests=4, answered=3)]
    row = overall(records, warmup_s=10.0)
    # the session began in the warm-up, its last three requests did not
    assert (row["requests"], row["answered"], row["digest_failures"]) == (3, 2, 1)
    assert row["sessions"] == 0
    # old logs without request records: the sessions' own counts
    row = overall([serve(5.0), qoe("p", requests=4, answered=3, digest_failures=1)])
    assert (row["requests"], row["answered"], row["digest_failures"]) == (4, 3, 1)


# -- the run's files -------------------------------------------------------------------------------

def write_logs(out: Path, records: list[dict]) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True)
    by_node: dict[str, list[dict]] = {}
    for r in records:
        by_node.setdefault(r.get("node", "x"), []).append(r)
    for node, recs in by_node.items():
        (logs / f"{node}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_write_results_summary_and_tables(tmp_path):
    write_logs(tmp_path, run_records() + [traffic("h1", "viewer", 8000),
                                          traffic("m1", "prefetch", 2000)])
    fidelity = {"fidelity_passed": True, "fidelity_rows": 12, "cpu_trusted": False}
    row = write_results(tmp_path, fidelity, end_at=15.0, settle_s=2.0, interval_s=5.0,
                        links=links((6000, 2000)), warmup_s=10.0)
    summary = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert summary["warmup_s"] == 10.0 and row["warmup_s"] == 10.0
    assert summary["origin_bytes"] == 4500 and summary["serves"] == 2
    assert summary["byte_hops"] == 8000
    assert summary["byte_hops_per_viewer_byte"] == pytest.approx(2.0)
    assert summary["push_ratio"] == pytest.approx(0.25)
    assert summary["pushes"] == 1 and summary["push_bytes"] == 1000
    assert summary["prefetch_copies"] == 1 and summary["prefetch_precision"] == 1.0
    assert summary["viewer_requests"] == 2            # the sessions' own count, from 10 s on
    assert bool(summary["fidelity_passed"]) and summary["fidelity_rows"] == 12
    assert not bool(summary["cpu_trusted"])
    assert "offload" not in summary.index and "serve_offload" in summary.index
    tables = tmp_path / "tables"
    for name in ("requests", "viewers", "prefetch", "intervals", "egress"):
        df = pd.read_csv(tables / f"{name}.csv")
        assert "warmup" in df.columns and df["warmup"].any() and not df["warmup"].all(), name
    intervals = pd.read_csv(tables / "intervals.csv")
    assert intervals["origin"].sum() == pytest.approx(15_500)
    assert {"serve_offload", "serve_offload_bytes"} <= set(intervals.columns)
    assert not {"offload", "offload_bytes"} & set(intervals.columns)
    assert isinstance(row["serves"], int) and isinstance(row["origin_bytes"], int)


def test_write_results_of_an_empty_run(tmp_path):
    row = write_results(tmp_path, warmup_s=5.0)
    tables = tmp_path / "tables"
    assert list(pd.read_csv(tables / "requests.csv").columns) == M.REQUEST_COLUMNS
    assert list(pd.read_csv(tables / "viewers.csv").columns) == M.VIEWER_COLUMNS
    assert list(pd.read_csv(tables / "prefetch.csv").columns) == M.COPY_COLUMNS
    assert list(pd.read_csv(tables / "egress.csv").columns) == M.EGRESS_COLUMNS
    assert list(pd.read_csv(tables / "intervals.csv").columns) == M.INTERVAL_COLUMNS
    for c in ("hit_ratio", "serve_offload", "byte_offload", "origin_peak_mbit", "byte_hops",
              "push_ratio", "overhead_ratio", "startup_p95_s", "prefetch_precision"):
        assert math.isnan(row[c]), c
    assert set(M.OVERALL_COLUMNS) <= set(pd.read_csv(tmp_path / "summary.csv").columns)


def test_origin_wire_bytes_are_what_the_master_s_links_carried_away_from_it():
    links = pd.DataFrame([
        {"a": "s1", "b": "m1", "bytes_ab": 100, "bytes_ba": 5_000},   # s1 -> m1, m1 -> s1
        {"a": "m1", "b": "s9", "bytes_ab": 700, "bytes_ba": 1},
        {"a": "s1", "b": "s2", "bytes_ab": 9_999, "bytes_ba": 9_999},
    ])
    got = M.origin_wire(links, "m1", 2_850)
    assert got == {"origin_wire_bytes": 5_700, "origin_wire_per_viewer_byte": 2.0}
    assert math.isnan(M.origin_wire(links, "m9", 1)["origin_wire_bytes"])
    assert math.isnan(M.origin_wire(None, "m1", 1)["origin_wire_per_viewer_byte"])
