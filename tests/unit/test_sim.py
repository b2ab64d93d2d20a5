"""The simulation backend: its clock, its network model, and whole simulated runs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from testbed.core import records as R
from testbed.harness import crosscheck as X
from testbed.scenario import load_scenario
from testbed.sim import run_sim
from testbed.sim.kernel import Kernel
from testbed.sim.network import IW_BYTES, LO_FLOOR, MSS, FlowNet, wire_bytes
from testbed.sim.nodes import RecordLog


# -- the clock ------------------------------------------------------------------------------
def test_kernel_runs_in_time_order_and_same_time_in_schedule_order():
    k = Kernel()
    seen = []
    k.at(2.0, seen.append, "c")
    k.at(1.0, seen.append, "a")
    k.at(1.0, seen.append, "b")
    k.at(5.0, seen.append, "late")
    k.run(3.0)
    assert seen == ["a", "b", "c"]
    assert k.now == 3.0 and k.pending() == 1
    k.at(0.5, seen.append, "past")  # never before now
    k.run(3.0)
    assert seen[-1] == "past"


# -- the network ------------------------------------------------------------------------------
def line(bw_mbit=None, delay_ms=10.0, queue=None, loss=0.0) -> nx.Graph:
    """a - s1 - s2 - b, and c on s1, d on s2: the s1-s2 link is the shared one."""
    g = nx.Graph()
    for n in ("s1", "s2"):
        g.add_node(n, role="switch")
    for n in ("a", "b", "c", "d"):
        g.add_node(n, role="helper")
    for h, s in (("a", "s1"), ("c", "s1"), ("b", "s2"), ("d", "s2")):
        g.add_edge(h, s, delay_ms=0.0)
    g.add_edge("s1", "s2", delay_ms=delay_ms, bw_mbit=bw_mbit, queue_pkts=queue,
               loss_pct=loss)
    return g


def done_at(k: Kernel, net: FlowNet, src: str, dst: str, nbytes: int, **kw) -> list:
    got: list = []
    net.send(src, dst, nbytes, lambda _: got.append(k.now), **kw)
    return got


def test_a_small_message_takes_the_path_delay_and_its_serialisation():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0), seed=1)
    got = done_at(k, net, "a", "b", 100)
    k.run(1.0)
    wire = wire_bytes(100)
    assert got == [pytest.approx(0.010 + wire / 1e6)]


def test_slow_start_takes_round_trips_on_an_unlimited_path():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=None, delay_ms=10.0), seed=1)
    n = 10 * IW_BYTES  # 10 + 20 + 40 windows: three rounds, the last one's data 10 ms out
    got = done_at(k, net, "a", "b", n)
    k.run(5.0)
    assert got == [pytest.approx(3 * 0.020 + 0.010, abs=1e-6)]


def test_a_connection_keeps_its_window_unless_it_idles_past_its_rto():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=None, delay_ms=10.0), seed=1)
    n = 10 * IW_BYTES
    first, got = [], []

    def again(_):
        first.append(k.now)
        k.after(0.05, lambda _: net.send("a", "b", n, lambda _: got.append(k.now)))

    net.send("a", "b", n, again)
    k.at(3.0, lambda _: net.send("a", "b", n, lambda _: got.append(k.now)))
    k.run(5.0)
    assert got[0] - (first[0] + 0.05) == pytest.approx(0.010, abs=1e-6)  # one flight
    assert got[1] - 3.0 == pytest.approx(first[0], abs=1e-6)  # idle 2.9 s: slow start again


def test_two_flows_share_the_bottleneck_and_finish_together():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0, delay_ms=1.0), seed=1)
    n = 2_000_000
    one = done_at(k, net, "a", "b", n)
    k.run(60.0)
    k2 = Kernel()
    net2 = FlowNet(k2, line(bw_mbit=8.0, delay_ms=1.0), seed=1)
    x = done_at(k2, net2, "a", "b", n)
    y = done_at(k2, net2, "c", "d", n)
    k2.run(60.0)
    assert one[0] == pytest.approx(wire_bytes(n) / 1e6, rel=0.03)
    assert x[0] == pytest.approx(y[0], rel=0.01)
    assert x[0] == pytest.approx(2 * one[0], rel=0.03)


def test_a_flow_held_back_elsewhere_leaves_its_share_to_the_others():
    g = line(bw_mbit=8.0, delay_ms=1.0)
    g.edges["d", "s2"]["bw_mbit"] = 1.0  # c -> d is held at d's own link
    k = Kernel()
    net = FlowNet(k, g, seed=1)
    done_at(k, net, "c", "d", 20_000_000)
    k.run(2.0)
    ab = []
    net.send("a", "b", 2_000_000, lambda _: ab.append(k.now))
    k.run(60.0)
    took = ab[0] - 2.0
    assert took == pytest.approx(wire_bytes(2_000_000) / (7e6 / 8), rel=0.05)  # 8 - 1 Mbit/s


def test_a_cancelled_transfer_never_arrives_and_leaves_the_link_to_the_others():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0, delay_ms=1.0), seed=1)
    gone = net.send("a", "b", 5_000_000, lambda _: pytest.fail("a cancelled flow arrived"))
    kept = done_at(k, net, "c", "d", 2_000_000)
    k.run(0.5)
    net.cancel(gone)  # its client gave up: the other flow has the link to itself
    k.run(60.0)
    alone = wire_bytes(2_000_000) / 1e6
    assert alone < kept[0] < alone + 0.5


def test_the_lower_class_takes_what_the_higher_leaves():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0, delay_ms=1.0), seed=1)
    hi = done_at(k, net, "a", "b", 1_000_000)
    lo = done_at(k, net, "c", "d", 1_000_000, lo=True)
    k.run(60.0)
    assert hi[0] < lo[0]
    assert hi[0] == pytest.approx(wire_bytes(1_000_000) / 1e6, rel=0.05)


def test_a_busy_link_queues_small_messages_behind_it():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=4.0, delay_ms=25.0, queue=100), seed=1)
    done_at(k, net, "a", "b", 5_000_000)
    k.run(3.0)  # the bulk flow's window has grown past its round trip's worth
    probe = done_at(k, net, "c", "d", 100)
    k.run(6.0)
    idle = 0.025 + wire_bytes(100) / 0.5e6
    buffer_s = 100 * (MSS + 52) / 0.5e6
    assert probe[0] - 3.0 > idle + 0.5 * buffer_s
    assert probe[0] - 3.0 <= idle + buffer_s + 1e-6


def test_multicast_reaches_every_member_once():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0), seed=1)
    got = []
    net.multicast("a", {"b": (got.append, "b"), "d": (got.append, "d"), "c": (got.append, "c")},
                  150_000, 125)
    k.run(5.0)
    assert sorted(got) == ["b", "c", "d"]
    shared = net.links[("s1", "s2")].bytes
    assert shared == pytest.approx(150_000 + 125 * 28)  # one copy over the shared link


def test_records_are_written_as_they_pile_up_in_order_per_node(tmp_path):
    log = RecordLog(tmp_path / "logs", limit=3)
    for i in range(4):
        log.add("h1" if i % 2 else "m1", {"kind": "x", "i": i})
    assert log.held == 1 and log.of("h1") == [{"kind": "x", "i": 3}]  # 3 went to disk
    log.flush(["m1", "h1", "v1"])
    lines = {p.name: [json.loads(x)["i"] for x in p.read_text().splitlines()]
             for p in (tmp_path / "logs").iterdir()}
    assert lines == {"m1.jsonl": [0, 2], "h1.jsonl": [1, 3], "v1.jsonl": []}
    with pytest.raises(ValueError, match="no log directory"):
        RecordLog().flush()


def geometric_net(k: Kernel, **params) -> FlowNet:
    import topologies

    g = topologies.generate("geometric", switches=30, radius=0.3, helpers=40, viewers=10,
                            core_bw_mbit=20, access_bw_mbit=5, helper_bw_mbit=10,
                            master_bw_mbit=50, seed=3, **params)
    return FlowNet(k, g, seed=1)


def test_a_multicast_tree_is_the_controllers_tree_for_those_members():
    from testbed.core.multicast import multicast_tree

    k = Kernel()
    net = geometric_net(k)
    hosts = sorted(h for h in net.view.hosts if h != "m1")
    rng = random.Random(5)
    for size in (1, 2, 5, 20, len(hosts)):
        members = rng.sample(hosts, size)
        t = multicast_tree(net.view, "m1", members, g=net.g)
        want = {("m1", t.graph["root"]), *t.edges()}
        got = net.tree("m1", members)
        assert {(lk.a, lk.b) for lk in got} == want and len(got) == len(want)


def test_rates_stay_within_capacity_and_the_kept_sums_match_the_flows():
    """Flows of both classes come and go over a mesh of narrow and wide links: no link
    carries more than its capacity (the lower class its floor beyond), each link's kept
    sums are its flows' rates, and every flow a link holds back is on it."""
    rng = random.Random(7)
    k = Kernel()
    net = geometric_net(k)
    hosts = sorted(net.view.hosts)
    live = []
    for i in range(300):
        src, dst = rng.sample(hosts, 2)
        f = net.send(src, dst, rng.choice([20_000, 150_000, 2_000_000]), lambda _: None,
                     lo=rng.random() < 0.3)
        if f is not None:
            live.append(f)
        if i % 7 == 0 and live:
            net.cancel(live.pop(rng.randrange(len(live))))
        k.run(k.now + rng.random() * 0.05)
        for lk in net.links.values():
            hi = math.fsum(f.rate for f in lk.hi if f.paced is None)
            lo = math.fsum(f.rate for f in lk.lo)
            assert lk.hi_sum == pytest.approx(hi, abs=1e-3)
            assert lk.lo_sum == pytest.approx(lo, abs=1e-3)
            if lk.cap != math.inf:  # the lower class is never starved below its floor
                assert hi <= lk.cap * (1 + 1e-9) + 1e-3
                assert hi + lo <= lk.cap * (1 + LO_FLOOR) * (1 + 1e-9) + 1e-3
            assert all(f in lk.hi or f in lk.lo for f in lk.held)
    k.run(k.now + 600.0)
    assert all(not lk.hi and not lk.lo and not lk.held for lk in net.links.values())


def test_a_live_burst_takes_the_link_before_tcp_and_is_lost_where_it_overflows():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=8.0, delay_ms=1.0, queue=5000), seed=1)
    done_at(k, net, "c", "d", 50_000_000)  # a long TCP transfer over s1-s2
    k.run(0.5)
    waits = net.path_queue(net.route("a", "b").limited)  # FIFO: behind TCP's queue
    got = []
    net.multicast("a", {"b": (lambda _: got.append(k.now), None)}, 150_000, 125)
    k.run(10.0)
    burst = (150_000 + 125 * 28) / 1e6  # at the whole 8 Mbit/s, not a share of it
    assert waits > 0.05
    assert got[0] - 0.5 == pytest.approx(waits + burst + 0.001, rel=0.05)
    k2 = Kernel()
    net2 = FlowNet(k2, line(bw_mbit=8.0, delay_ms=1.0, queue=20), seed=1)
    got2 = []
    net2.multicast("a", {"b": (got2.append, "b"), "c": (got2.append, "c")}, 150_000, 125)
    k2.run(5.0)
    assert got2 == ["c"]  # 8 Mbit/s behind a 20-packet queue: b's copy overflowed


def test_paths_follow_the_lowest_delay():
    g = nx.Graph()
    for n in ("s1", "s2", "s3"):
        g.add_node(n, role="switch")
    g.add_node("a", role="helper")
    g.add_node("b", role="helper")
    g.add_edge("a", "s1", delay_ms=0)
    g.add_edge("b", "s3", delay_ms=0)
    g.add_edge("s1", "s3", delay_ms=30)
    g.add_edge("s1", "s2", delay_ms=5)
    g.add_edge("s2", "s3", delay_ms=5)
    net = FlowNet(Kernel(), g)
    assert [(lk.a, lk.b) for lk in net.path("a", "b")] == [
        ("a", "s1"), ("s1", "s2"), ("s2", "s3"), ("s3", "b")]
    assert net.delay("a", "b") == pytest.approx(0.010)
    assert net.path("a", "a") == ()


def test_a_lossy_link_caps_a_flow_at_the_loss_limited_rate():
    k = Kernel()
    net = FlowNet(k, line(bw_mbit=100.0, delay_ms=20.0, loss=1.0), seed=1)
    got = done_at(k, net, "a", "b", 2_000_000)
    k.run(600.0)
    mathis = MSS / 0.040 * 1.22 / math.sqrt(0.01)  # bytes/s
    assert got[0] > 0.8 * wire_bytes(2_000_000) / mathis


# -- whole runs ---------------------------------------------------------------------------
def small(tmp_path, name: str, **over):
    sc = load_scenario("experiments/default.yaml")
    changes = {"duration_s": 30, "warmup_s": 10, "content.videos": 10, **over}
    return sc.with_overrides(changes), tmp_path / name


def test_a_simulated_run_writes_the_same_tables_and_is_deterministic(tmp_path):
    sc, out = small(tmp_path, "a")
    first = run_sim(sc, out, say=lambda m: None)
    run_sim(sc, tmp_path / "b", say=lambda m: None)
    for f in ("summary.csv", "tables/requests.csv", "tables/viewers.csv", "tables/links.csv",
              "workload/planned.csv", "manifest.json", "logs/m1.jsonl"):
        assert (out / f).is_file(), f
    a = pd.read_csv(out / "summary.csv").iloc[0]
    b = pd.read_csv(tmp_path / "b" / "summary.csv").iloc[0]
    assert a.equals(b)
    assert first.summary["requests"] > 50 and first.summary["answered"] == first.summary[
        "requests"] - first.summary.get("failed", 0)
    assert first.summary["digest_failures"] == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["backend"] == "sim" and m["status"] == "complete"
    assert m["sim"]["events"] > 1000 and m["sim"]["signatures"]["signed"] > 0
    # the same records as the daemons: every kind declared, every field it declares
    for path in (out / "logs").glob("*.jsonl"):
        for line_ in path.read_text().splitlines():
            rec = json.loads(line_)
            assert rec["kind"] in R.KINDS, rec["kind"]
    links = pd.read_csv(out / "tables" / "links.csv")
    assert (links["bytes_ab"] + links["bytes_ba"]).sum() > 0


def test_a_simulated_run_finds_the_tiers_and_invalidates_on_republish(tmp_path):
    sc, out = small(tmp_path, "t", duration_s=45, events=[{"at_s": 25,
                                                           "republish": "vod-0000"}])
    s = run_sim(sc, out, say=lambda m: None).summary
    tiers = json.loads(s["tiers"])
    assert sorted(tiers[0]) == ["h1", "h2", "h3", "h4"]  # regions 1-2: near
    assert s["invalidation_helpers"] == 8 and s["stale_serves"] == 0
    assert s["live_segments_received"] > 0


def test_a_link_event_slows_what_crosses_it(tmp_path):
    sc, fast = small(tmp_path, "fast", policy="tree")
    slow_sc, slow = small(tmp_path, "slow", policy="tree",
                          events=[{"at_s": 5, "link": ["s1", "s4"], "delay": "200ms"}])
    run_sim(sc, fast, say=lambda m: None)
    run_sim(slow_sc, slow, say=lambda m: None)

    def latency(out, viewer: str) -> float:
        recs = [json.loads(x) for x in (out / "logs" / f"{viewer}.jsonl").read_text().split()]
        return pd.Series([r["latency_ms"] for r in recs if r["kind"] == "request"
                          and r["at"] > 8]).mean()

    assert latency(slow, "v3") > latency(fast, "v3") + 400  # a round trip 400 ms longer
    assert latency(slow, "v1") == pytest.approx(latency(fast, "v1"), rel=0.2)


# -- the cross-check ------------------------------------------------------------------------
def agg(rows: dict) -> pd.DataFrame:
    out = []
    for policy, (mean, ci) in rows.items():
        out.append({"policy": policy, "hit_ratio_mean": mean, "hit_ratio_ci95": ci})
    return pd.DataFrame(out)


def test_crosscheck_judges_within_ten_percent_or_the_ci_and_the_ranking():
    emu = agg({"tree": (0.20, 0.01), "mesh": (0.25, 0.05), "pred": (0.60, 0.02)})
    sim = agg({"tree": (0.215, 0.0), "mesh": (0.19, 0.0), "pred": (0.40, 0.0)})
    table, ranks = X.crosscheck(emu, sim, {"hit_ratio": True})
    verdict = dict(zip(table["policy"], table["agrees"]))
    assert verdict == {"tree": True, "mesh": False, "pred": False}
    assert table.set_index("policy").at["mesh", "within_ci"] is False or not table.set_index(
        "policy").at["mesh", "within_ci"]
    r = ranks[0]
    assert r.emu == ["pred", "mesh", "tree"] and r.sim == ["pred", "tree", "mesh"]
    assert r.discordant == [("tree", "mesh")] and r.separated == []  # within their CIs
    assert X.judge(0.0, math.nan, 0.0)["agrees"]


# -- the command line ---------------------------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from testbed import cli as C

    return CliRunner().invoke(C.app, list(args))


def test_compare_and_sweep_with_the_sim_backend_need_no_root_and_give_the_same_outputs(
        tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # not root: the simulation needs none
    out = tmp_path / "cmp"
    r = cli("compare", "experiments/default.yaml", "--backend", "sim", "--policies",
            "tree,predictive", "--seeds", "1,2", "--duration", "25", "--set", "warmup_s=5",
            "--set", "content.videos=8", "--out", str(out))
    assert r.exit_code == 0, r.output
    points = pd.read_csv(out / "points.csv")
    assert list(points["status"]) == ["complete"] * 4
    assert set(points["backend"]) == {"sim"}
    agg = pd.read_csv(out / "aggregate.csv")
    assert set(agg["policy"]) == {"tree", "predictive"} and "hit_ratio_ci95" in agg
    assert (out / "report.html").is_file()
    assert json.loads((out / "collection.json").read_text())["backend"] == "sim"
    again = cli("compare", "experiments/default.yaml", "--backend", "sim", "--policies",
                "tree,predictive", "--seeds", "1,2", "--duration", "25", "--set",
                "warmup_s=5", "--set", "content.videos=8", "--out", str(out))
    assert again.exit_code == 0 and "kept 4" in again.output  # resumes as the emulation's
    mixed = cli("compare", "experiments/default.yaml", "--policies", "tree,predictive",
                "--seeds", "1,2", "--duration", "25", "--set", "warmup_s=5", "--set",
                "content.videos=8", "--out", str(out), "--no-check")
    assert mixed.exit_code != 0  # an emulated comparison never lands in a simulated one
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nscenario: {Path.cwd() / 'experiments/default.yaml'}\n"
                     "mode: grid\nset: {duration_s: 20, warmup_s: 5, content.videos: 8}\n"
                     "axes:\n  delivery.mesh_degree: [1, 2]\n")
    r = cli("sweep", str(sweep), "--backend", "sim", "--out", str(tmp_path / "sw"))
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "sw" / "points.csv")) == 2


@pytest.mark.parametrize("args, fragment", [
    (("--backend", "ns3"), "--backend 'ns3'"),
    (("--backend", "sim", "--mode", "netem"), "--mode"),
    (("--backend", "sim", "--require-fidelity"), "--require-fidelity"),
])
def test_bad_backend_options_are_refused_in_one_line(args, fragment):
    r = cli("run", "experiments/default.yaml", *args)
    assert r.exit_code == 2 and fragment in r.output


def test_a_seed_gives_the_same_run_in_another_process(tmp_path):
    """Not only within one interpreter: string hashing differs from process to process
    (PYTHONHASHSEED), and nothing a run decides may depend on it."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom testbed.scenario import load_scenario\n"
            "from testbed.sim import run_sim\n"
            "sc = load_scenario('experiments/default.yaml').with_overrides("
            "{'duration_s': 30, 'warmup_s': 10, 'content.videos': 10})\n"
            "run_sim(sc, sys.argv[1], say=lambda m: None)\n")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], check=True,
                       env=env, cwd=Path(__file__).resolve().parents[2])
    a = (tmp_path / "1" / "summary.csv").read_text()
    assert a == (tmp_path / "2" / "summary.csv").read_text()
    for name in ("m1", "h5", "v2"):
        assert ((tmp_path / "1" / "logs" / f"{name}.jsonl").read_text()
                == (tmp_path / "2" / "logs" / f"{name}.jsonl").read_text())


def test_a_run_tunes_the_cycle_collector_and_restores_it():
    import gc

    from testbed.sim.run import GC_THRESHOLDS, fewer_collections

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what existed before the run is never walked
        raise RuntimeError("a run that fails")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
