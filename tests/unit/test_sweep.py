"""Sweeps and collections: a sweep file expands into numbered points, and a comparison or a
sweep runs them in order, resumes after an interruption, records failures and checks each
distinct network once; over several seeds it writes aggregate.csv, and with
require_fidelity a failed check plays nothing.  The runner is a fake that writes what a
real run writes at least."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from testbed.core.sweep import MAX_POINTS, Point, SweepError, parse_sweep
from testbed.harness import manifest
from testbed.harness.experiment import (
    KEY_METRICS,
    CollectionError,
    FidelityRefused,
    check_directory,
    comparison,
    comparison_rows,
    network_key,
    of_sweep,
    points_table,
    run_collection,
)
from testbed.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "experiments" / "default.yaml"
SRC = "experiments/sweeps/unit.yaml"
IDS4 = ["p00", "p01", "p02", "p03"]


@pytest.fixture(autouse=True)
def _no_subprocesses(monkeypatch):
    """manifest.write asks git, Open vSwitch and every package for versions: slow, and not
    what is tested here."""
    monkeypatch.setattr(manifest, "_run", lambda argv: "")
    monkeypatch.setattr(manifest, "packages", lambda: {"pandas": pd.__version__})


@pytest.fixture(scope="module")
def base() -> Scenario:
    return load_scenario(DEFAULT)


def sweep_of(axes: dict, **more: Any):
    return parse_sweep({"scenario": str(DEFAULT), "axes": axes, **more}, SRC)


def sweep_error(data: Any, source: str = SRC) -> str:
    with pytest.raises(SweepError) as err:
        parse_sweep(data, source, Path("/base"))
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{source}: "), msg
    return msg


# -- expansion -------------------------------------------------------------------------------

def test_grid_expands_every_combination_last_axis_fastest():
    sw = sweep_of({"seed": [1, 2], "delivery.cache_mb": [4, 8, 16]})
    points = sw.points()
    assert [p.id for p in points] == ["p00", "p01", "p02", "p03", "p04", "p05"]
    assert [dict(p.values) for p in points] == [
        {"seed": 1, "delivery.cache_mb": 4}, {"seed": 1, "delivery.cache_mb": 8},
        {"seed": 1, "delivery.cache_mb": 16}, {"seed": 2, "delivery.cache_mb": 4},
        {"seed": 2, "delivery.cache_mb": 8}, {"seed": 2, "delivery.cache_mb": 16}]
    assert sw.mode == "grid" and sw.describe()["points"] == 6


def test_zip_pairs_the_ith_values():
    sw = sweep_of({"seed": [1, 2, 3], "policy": ["tree", "mesh-pull", "oracle"]}, mode="zip")
    assert [(p.id, dict(p.values)) for p in sw.points()] == [
        ("p00", {"seed": 1, "policy": "tree"}), ("p01", {"seed": 2, "policy": "mesh-pull"}),
        ("p02", {"seed": 3, "policy": "oracle"})]


def test_zip_of_unequal_lengths_is_an_error():
    msg = sweep_error({"scenario": "s.yaml", "mode": "zip",
                       "axes": {"seed": [1, 2, 3], "policy": ["tree", "oracle"]}})
    assert msg.startswith(f"{SRC}: axes: ") and "zip" in msg
    assert "seed: 3" in msg and "policy: 2" in msg


@pytest.mark.parametrize(("n", "first", "last"), [
    (1, "p00", "p00"), (100, "p00", "p99"), (101, "p000", "p100"), (1001, "p0000", "p1000")])
def test_ids_are_as_wide_as_the_count_needs(n, first, last):
    points = sweep_of({"seed": list(range(n))}).points()
    ids = [p.id for p in points]
    assert (len(ids), ids[0], ids[-1]) == (n, first, last)
    assert len(set(ids)) == n and ids == sorted(ids)  # sorted by name = sorted by order


def test_fixed_overrides_are_merged_into_every_point():
    sw = sweep_of({"policy": ["tree", "oracle"]}, set={"duration_s": 90, "seed": 3})
    assert dict(sw.fixed) == {"duration_s": 90, "seed": 3}
    assert [p.overrides(sw.fixed) for p in sw.points()] == [
        {"duration_s": 90, "seed": 3, "policy": "tree"},
        {"duration_s": 90, "seed": 3, "policy": "oracle"}]
    assert Point("p00", {"seed": 1}).overrides({}) == {"seed": 1}


def test_a_key_both_fixed_and_an_axis_is_an_error():
    msg = sweep_error({"scenario": "s.yaml", "set": {"seed": 3}, "axes": {"seed": [1, 2]}})
    assert msg.startswith(f"{SRC}: axes.seed: ") and "'set'" in msg


def test_relative_scenario_path_resolves_against_base():
    data = {"scenario": "../default.yaml", "axes": {"seed": [1]}}
    assert parse_sweep(data, SRC, Path("/x/sweeps")).scenario == Path("/x/sweeps/../default.yaml")
    assert parse_sweep(data, SRC).scenario == Path("../default.yaml")
    absolute = {"scenario": "/elsewhere/s.yaml", "axes": {"seed": [1]}}
    assert parse_sweep(absolute, SRC, Path("/x/sweeps")).scenario == Path("/elsewhere/s.yaml")


def test_name_defaults_to_the_file_stem():
    assert sweep_of({"seed": [1]}).name == "unit"
    assert sweep_of({"seed": [1]}, name="mesh-degree").name == "mesh-degree"
    assert "name" in sweep_error({"scenario": "s.yaml", "name": "a b", "axes": {"seed": [1]}})


# -- errors: one line naming the file and the key ----------------------------------------------

@pytest.mark.parametrize(("data", "where", "fragment"), [
    ({"scenario": "s.yaml", "axes": {"seed": [1]}, "axis": {}}, "axis", "unknown key"),
    ({"axes": {"seed": [1]}}, "scenario", "missing"),
    ({"scenario": "", "axes": {"seed": [1]}}, "scenario", "missing"),
    ({"scenario": "s.yaml"}, "axes", "mapping"),
    ({"scenario": "s.yaml", "axes": {}}, "axes", "mapping"),
    ({"scenario": "s.yaml", "axes": {"seed": 3}}, "axes.seed", "non-empty list"),
    ({"scenario": "s.yaml", "axes": {"seed": []}}, "axes.seed", "non-empty list"),
    ({"scenario": "s.yaml", "axes": {"seed": [1, 2, 1]}}, "axes.seed", "repeats a value"),
    ({"scenario": "s.yaml", "axes": {"delivery..x": [1]}}, "axes", "'delivery..x'"),
    ({"scenario": "s.yaml", "axes": {"seed": [1]}, "set": {"delivery..x": 1}}, "set",
     "'delivery..x'"),
    ({"scenario": "s.yaml", "axes": {"seed": [1]}, "set": [1]}, "set", "mapping"),
    ({"scenario": "s.yaml", "axes": {"seed": [1]}, "mode": "cross"}, "mode", "'cross'"),
])
def test_errors_name_the_file_and_the_key(data, where, fragment):
    msg = sweep_error(data)
    assert msg.startswith(f"{SRC}: {where}: "), msg
    assert fragment in msg


def test_not_a_mapping_is_an_error():
    assert "mapping" in sweep_error(["seed"])


def test_too_many_points_is_an_error_without_expanding_them():
    side = 101  # 101 x 101 > MAX_POINTS
    assert side * side > MAX_POINTS
    msg = sweep_error({"scenario": "s.yaml",
                       "axes": {"seed": list(range(side)), "viewers.zipf_s": list(range(side))}})
    assert msg.startswith(f"{SRC}: axes: ") and f"{side * side} points exceed" in msg
    ok = sweep_of({"seed": list(range(100)), "viewers.zipf_s": list(range(100))})
    assert len(ok.points()) == MAX_POINTS


# -- collections: a fake runner and checker ----------------------------------------------------

HIT = {"tree": 0.1, "mesh-pull": 0.2, "popularity": 0.3, "predictive": 0.4, "oracle": 0.5}
SUMMARY = {"passed": 12, "measurements": 12, "failed": []}
RUN_IDS = itertools.count()  # every fake run writes different bytes


def hit_ratio(sc: Scenario) -> float:
    """What the fake run reports: tells apart every (policy, cache size) of a test."""
    return HIT[sc.policy] + sc.delivery.cache_mb / 100


@dataclass
class Call:
    point: str
    scenario: Scenario
    fidelity: dict | None
    existed: bool  # did the run directory exist when the run started?


class FakeRunner:
    """``run(sc, run_dir, fidelity)``: writes summary.csv, then a complete manifest.

    ``fail``: points that raise RuntimeError; ``interrupt``: the point that raises
    KeyboardInterrupt; ``partial``: those first write what a real run has by then (a
    "running" manifest and a log).
    """

    def __init__(self, fail: tuple[str, ...] = (), interrupt: str | None = None,
                 partial: bool = False) -> None:
        self.calls: list[Call] = []
        self.fail, self.interrupt, self.partial = set(fail), interrupt, partial

    def __call__(self, sc: Scenario, run_dir: Path, fidelity: dict | None) -> None:
        pid = Path(run_dir).name
        self.calls.append(Call(pid, sc, fidelity, Path(run_dir).exists()))
        if self.partial and (pid in self.fail or pid == self.interrupt):
            manifest.write(run_dir, status="running", scenario=sc.to_dict(), policy=sc.policy,
                           seed=sc.seed, source=sc.source)
            (run_dir / "logs").mkdir()
            (run_dir / "logs" / "h1.jsonl").write_text('{"kind": "serve", "at": 1.0}\n')
        if pid == self.interrupt:
            raise KeyboardInterrupt
        if pid in self.fail:
            raise RuntimeError(f"boom at {pid}")
        run_dir.mkdir(parents=True)
        hit, run_id = hit_ratio(sc), next(RUN_IDS)
        pd.DataFrame([{"requests": 100, "serves": 98, "serve_offload": hit / 2,
                       "byte_offload": hit / 4, "hit_ratio": hit, "cpu_trusted": sc.seed != 2,
                       "policy": sc.policy, "seed": sc.seed, "run_id": run_id}]
                     ).to_csv(run_dir / "summary.csv", index=False)
        manifest.write(run_dir, status=manifest.COMPLETE, scenario=sc.to_dict(),
                       policy=sc.policy, seed=sc.seed, fidelity=fidelity, run_id=run_id)

    @property
    def ran(self) -> list[str]:
        return [c.point for c in self.calls]


class FakeChecker:
    """``check(sc, path)``: writes a fidelity report to ``path`` (unless ``write`` is False)
    and returns its summary; ``failing``: seeds whose network has 3 rows out of tolerance;
    ``broken``: seeds whose check raises."""

    def __init__(self, write: bool = True, failing: tuple[int, ...] = (),
                 broken: tuple[int, ...] = ()) -> None:
        self.paths: list[Path] = []
        self.write, self.failing, self.broken = write, set(failing), set(broken)

    def __call__(self, sc: Scenario, path: Path) -> dict:
        self.paths.append(path)
        if sc.seed in self.broken:
            raise RuntimeError("no network\nhere")
        summary = {**SUMMARY, "helpers": sc.topology.params.get("helpers_per_region")}
        if sc.seed in self.failing:
            summary.update(passed=9, failed=["s1-s2", "s1-s3", "m1->h4"])
        if self.write:
            path.write_text(json.dumps({"scenario": sc.source, "summary": summary}))
        return summary


def go(c, out: Path, run: FakeRunner, check: FakeChecker | None = None):
    return run_collection(c, out, run, check, say=lambda m: None)


def grid(base: Scenario):
    """policy x delivery.cache_mb, 2 x 2."""
    return of_sweep(sweep_of({"policy": ["tree", "predictive"], "delivery.cache_mb": [4, 16]}),
                    base)


def table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "points.csv")


def stamp(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# -- running a collection ----------------------------------------------------------------------

def test_grid_runs_every_point_in_order_and_tabulates_it(base, tmp_path):
    out, run = tmp_path / "sweep", FakeRunner()
    outcome = go(grid(base), out, run)
    assert [(c.scenario.policy, c.scenario.delivery.cache_mb) for c in run.calls] == [
        ("tree", 4), ("tree", 16), ("predictive", 4), ("predictive", 16)]
    assert run.ran == IDS4 and [c.existed for c in run.calls] == [False] * 4
    assert (outcome.ran, outcome.kept, outcome.failed) == (IDS4, [], {})
    t = table(out)
    assert list(t["point"]) == IDS4 and list(t["status"]) == ["complete"] * 4
    assert list(t["dir"]) == [f"points/{p}" for p in IDS4]
    assert list(t["policy"]) == ["tree", "tree", "predictive", "predictive"]
    assert list(t["delivery.cache_mb"]) == [4, 16, 4, 16]
    assert list(t["hit_ratio"]) == pytest.approx([0.14, 0.26, 0.44, 0.56])
    assert list(t["requests"]) == [100] * 4 and "serves" in t
    assert outcome.table is not None and list(outcome.table["point"]) == IDS4
    assert json.loads((out / "collection.json").read_text())["kind"] == "sweep"


def test_points_table_before_anything_ran(base, tmp_path):
    t = points_table(tmp_path, grid(base))
    assert list(t["status"]) == ["pending"] * 4
    assert list(t["delivery.cache_mb"]) == [4, 16, 4, 16]
    assert "hit_ratio" not in t


def test_interrupted_collection_resumes_where_it_stopped(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    first = FakeRunner(interrupt="p01")
    with pytest.raises(KeyboardInterrupt):
        go(c, out, first)
    assert first.ran == ["p00", "p01"]
    t = table(out)
    assert list(t["point"]) == IDS4
    assert t["status"].iloc[0] == "complete" and "complete" not in list(t["status"].iloc[1:])
    kept = [stamp(out / "points" / "p00" / f) for f in ("manifest.json", "summary.csv")]

    again = FakeRunner()
    outcome = go(c, out, again)
    assert again.ran == ["p01", "p02", "p03"]
    assert (outcome.ran, outcome.kept) == (["p01", "p02", "p03"], ["p00"])
    assert [stamp(out / "points" / "p00" / f) for f in ("manifest.json", "summary.csv")] == kept
    assert list(table(out)["status"]) == ["complete"] * 4
    assert list(table(out)["hit_ratio"]) == pytest.approx([0.14, 0.26, 0.44, 0.56])


def test_leftover_of_an_interrupted_point_is_cleared_before_it_reruns(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        go(c, out, FakeRunner(interrupt="p01", partial=True))
    stale = out / "points" / "p01" / "logs" / "h1.jsonl"
    assert stale.exists()
    assert list(table(out)["status"]) == ["complete", "running", "pending", "pending"]

    again = FakeRunner()
    go(c, out, again)
    assert again.ran == ["p01", "p02", "p03"]
    assert again.calls[0].existed is False  # the run started in an empty place
    assert not stale.exists() and not stale.parent.exists()
    assert manifest.is_complete(out / "points" / "p01")


def test_a_failing_point_is_recorded_and_the_rest_still_run(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    run = FakeRunner(fail=("p01",))
    outcome = go(c, out, run)
    assert run.ran == IDS4
    assert outcome.ran == ["p00", "p02", "p03"]
    assert outcome.failed == {"p01": "RuntimeError: boom at p01"}
    m = manifest.read(out / "points" / "p01")
    assert m["status"] == "failed" and "boom at p01" in m["error"]
    assert m["policy"] == "tree" and m["scenario"]["delivery"]["cache_mb"] == 16
    assert list(table(out)["status"]) == ["complete", "failed", "complete", "complete"]

    again = FakeRunner()
    outcome = go(c, out, again)
    assert again.ran == ["p01"]
    assert (outcome.ran, outcome.kept, outcome.failed) == (["p01"], ["p00", "p02", "p03"], {})
    assert list(table(out)["status"]) == ["complete"] * 4


def test_a_point_failing_after_its_run_started_is_recorded_failed(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    run = FakeRunner(fail=("p01",), partial=True)
    outcome = go(c, out, run)
    assert run.ran == IDS4
    assert outcome.failed == {"p01": "RuntimeError: boom at p01"}
    assert manifest.read(out / "points" / "p01")["status"] == "failed"


def test_a_point_whose_manifest_says_complete_without_a_summary_reruns(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    manifest.write(out / "points" / "p01", status=manifest.COMPLETE)  # summary.csv lost
    run = FakeRunner()
    outcome = go(c, out, run)
    assert run.ran == IDS4 and outcome.kept == []


# -- fidelity checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("write", [True, False])
def test_one_fidelity_check_for_a_policy_axis(base, tmp_path, write):
    c, out = comparison(base, ["tree", "mesh-pull", "predictive"], DEFAULT), tmp_path / "cmp"
    run, check = FakeRunner(), FakeChecker(write)
    go(c, out, run, check)
    key = network_key(run.calls[0].scenario)
    assert check.paths == [out / "fidelity" / f"{key}.json"]
    want = {**SUMMARY, "helpers": 2, "source": str(out / "fidelity" / f"{key}.json")}
    assert [c.fidelity for c in run.calls] == [want] * 3
    assert manifest.read(out / "points" / "p02")["fidelity"] == want


def test_one_fidelity_check_per_distinct_network(base, tmp_path):
    sw = sweep_of({"topology.params.helpers_per_region": [1, 2], "policy": ["tree", "oracle"]})
    out, run, check = tmp_path / "sweep", FakeRunner(), FakeChecker()
    go(of_sweep(sw, base), out, run, check)
    assert len(check.paths) == 2 and check.paths[0] != check.paths[1]
    for call in run.calls:
        helpers = call.scenario.topology.params["helpers_per_region"]
        path = out / "fidelity" / f"{network_key(call.scenario)}.json"
        assert call.fidelity == {**SUMMARY, "helpers": helpers, "source": str(path)}
    assert [c.fidelity["helpers"] for c in run.calls] == [1, 1, 2, 2]


def test_stored_fidelity_is_reused_on_rerun(base, tmp_path):
    c, out = grid(base), tmp_path / "sweep"
    go(c, out, FakeRunner(fail=("p01",)), FakeChecker())
    again, check = FakeRunner(), FakeChecker()
    go(c, out, again, check)
    assert again.ran == ["p01"] and check.paths == []
    key = network_key(again.calls[0].scenario)
    assert again.calls[0].fidelity == {
        **SUMMARY, "helpers": 2, "source": str(out / "fidelity" / f"{key}.json")}


def test_without_a_checker_runs_get_no_fidelity(base, tmp_path):
    run = FakeRunner()
    go(grid(base), tmp_path / "sweep", run)
    assert [c.fidelity for c in run.calls] == [None] * 4
    assert not (tmp_path / "sweep" / "fidelity").exists()


# -- refusals --------------------------------------------------------------------------------

def test_a_directory_holding_another_collection_is_refused(base, tmp_path):
    out = tmp_path / "cmp"
    first = comparison(base, ["tree", "oracle"], DEFAULT)
    go(first, out, FakeRunner())
    claimed = (out / "collection.json").read_text()
    check_directory(out, first)  # the same collection: fine
    run = FakeRunner()
    with pytest.raises(CollectionError) as err:
        go(comparison(base, ["tree", "predictive"], DEFAULT), out, run)
    msg = str(err.value)
    assert "\n" not in msg and str(out) in msg and "different" in msg
    assert run.calls == [] and (out / "collection.json").read_text() == claimed
    with pytest.raises(CollectionError):
        check_directory(out, grid(base))


def test_comparison_of_policies(base):
    c = comparison(base, ["tree", "oracle"], DEFAULT, fixed={"duration_s": 60})
    assert c.kind == "compare" and c.describe()["kind"] == "compare"
    assert [(p.id, dict(p.values)) for p in c.points] == [
        ("p00", {"policy": "tree"}), ("p01", {"policy": "oracle"})]
    assert dict(c.sweep.fixed) == {"duration_s": 60}


@pytest.mark.parametrize(("policies", "fragment"), [
    (["tree", "nope"], "'nope'"),
    (["tree", "oracle", "tree"], "distinct"),
    ([], "at least one"),
])
def test_comparison_refuses_unknown_or_repeated_policies(base, policies, fragment):
    with pytest.raises(CollectionError) as err:
        comparison(base, policies, DEFAULT)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_an_invalid_point_is_refused_before_anything_runs(base, tmp_path):
    c = of_sweep(sweep_of({"delivery.cache_mb": [4, -1]}), base)
    out, run = tmp_path / "sweep", FakeRunner()
    with pytest.raises(CollectionError) as err:
        go(c, out, run)
    msg = str(err.value)
    assert "\n" not in msg and "delivery.cache_mb" in msg and "-1" in msg
    assert run.calls == [] and not out.exists()


# -- networks and the comparison table ---------------------------------------------------------

def test_network_key_tells_networks_apart(base):
    key = network_key(base)
    assert all(network_key(base.with_overrides({"policy": p})) == key for p in HIT)
    assert network_key(base.with_overrides({"delivery.cache_mb": 64})) == key
    assert network_key(base.with_overrides({"seed": 2})) != key
    assert network_key(base.with_overrides({"links.defaults.delay": "5ms"})) != key
    assert network_key(base.with_overrides({"topology.params.helpers_per_region": 1})) != key


def test_comparison_rows_keep_complete_points_axes_then_key_metrics(base, tmp_path):
    c = grid(base)
    outcome = go(c, tmp_path / "sweep", FakeRunner(fail=("p01",)))
    rows = comparison_rows(outcome.table, [*c.sweep.axes, "seed"])
    assert list(rows["point"]) == ["p00", "p02", "p03"]
    assert list(rows.columns) == ["point", "policy", "delivery.cache_mb", "seed", "hit_ratio",
                                  "byte_offload", "requests", "cpu_trusted"]
    assert list(rows.index) == [0, 1, 2]
    assert list(rows["hit_ratio"]) == pytest.approx([0.14, 0.44, 0.56])
    metrics = [m for m in rows.columns if m in KEY_METRICS]
    assert metrics == sorted(metrics, key=KEY_METRICS.index)


def test_comparison_rows_of_a_table_without_status():
    t = pd.DataFrame({"point": ["p00", "p01"], "serves": [1, 2], "byte_offload": [0.5, 0.6],
                      "hit_ratio": [0.1, 0.2], "policy": ["tree", "oracle"]})
    rows = comparison_rows(t, ["policy"])
    assert list(rows.columns) == ["point", "policy", "hit_ratio", "byte_offload"]
    assert len(rows) == 2


# -- several seeds ---------------------------------------------------------------------------

def test_comparison_over_seeds_plays_every_policy_on_every_seed(base):
    c = comparison(base, ["tree", "oracle"], DEFAULT, fixed={"duration_s": 60}, seeds=[1, 2, 3])
    assert list(c.sweep.axes) == ["seed", "policy"] and c.sweep.mode == "grid"
    assert [(p.id, dict(p.values)) for p in c.points] == [
        ("p00", {"seed": 1, "policy": "tree"}), ("p01", {"seed": 1, "policy": "oracle"}),
        ("p02", {"seed": 2, "policy": "tree"}), ("p03", {"seed": 2, "policy": "oracle"}),
        ("p04", {"seed": 3, "policy": "tree"}), ("p05", {"seed": 3, "policy": "oracle"})]
    assert c.describe()["axes"] == {"seed": [1, 2, 3], "policy": ["tree", "oracle"]}
    one = comparison(base, ["tree"], DEFAULT, seeds=[4])
    assert [dict(p.values) for p in one.points] == [{"seed": 4, "policy": "tree"}]


@pytest.mark.parametrize(("seeds", "fixed", "fragment"), [
    ([], {}, "at least one"), ([1, -1], {}, ">= 0"), ([1, 2, 1], {}, "distinct"),
    ([1, 2.5], {}, "whole numbers"), ([True], {}, "whole numbers"),
    ([1, 2], {"seed": 3}, "seed is given twice"),
])
def test_comparison_refuses_bad_seeds(base, seeds, fixed, fragment):
    with pytest.raises(CollectionError) as err:
        comparison(base, ["tree"], DEFAULT, fixed=fixed, seeds=seeds)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_same_seed_same_network_and_viewers_for_every_policy(base, tmp_path):
    c = comparison(base, ["tree", "predictive"], DEFAULT, seeds=[1, 2])
    run, check = FakeRunner(), FakeChecker()
    go(c, tmp_path / "cmp", run, check)
    by_seed: dict[int, set] = {}
    for call in run.calls:
        sc = call.scenario
        by_seed.setdefault(sc.seed, set()).add((network_key(sc), json.dumps(
            sc.to_dict()["viewers"], sort_keys=True), sc.to_dict()["topology"]["params"]
            .get("seed")))
    assert sorted(by_seed) == [1, 2] and all(len(v) == 1 for v in by_seed.values())
    assert len(check.paths) == 2  # one check per seed's network


def test_seed_axis_aggregates_mean_ci_and_n_into_aggregate_csv(base, tmp_path):
    c, out = comparison(base, ["tree", "oracle"], DEFAULT, seeds=[1, 2, 3]), tmp_path / "cmp"
    outcome = go(c, out, FakeRunner(fail=("p03",)), FakeChecker())
    agg = pd.read_csv(out / "aggregate.csv")
    assert list(agg["policy"]) == ["tree", "oracle"]
    assert list(agg.columns[:7]) == ["policy", "runs", "left_out", "fidelity_passed_total",
                                     "fidelity_rows_total", "cpu_trusted_runs",
                                     "requests_mean"]
    assert "seed_mean" not in agg and "run_id_mean" in agg and "policy_mean" not in agg
    tree, oracle = agg.iloc[0], agg.iloc[1]
    assert (tree["runs"], tree["left_out"], oracle["runs"], oracle["left_out"]) == (3, 0, 2, 1)
    # every seed's hit ratio is the same in the fake: mean as is, CI of zero width
    assert tree["hit_ratio_mean"] == pytest.approx(HIT["tree"] + 0.64)
    assert tree["hit_ratio_ci95"] == pytest.approx(0.0) and tree["hit_ratio_n"] == 3
    # cpu_trusted is False on seed 2 only: the share of runs that were true
    assert tree["cpu_trusted_mean"] == pytest.approx(2 / 3) and tree["cpu_trusted_runs"] == 2
    assert oracle["cpu_trusted_mean"] == pytest.approx(1.0) and oracle["cpu_trusted_n"] == 2
    # three networks of 12 rows each for tree, two (seed 2 failed) for oracle
    assert (tree["fidelity_passed_total"], tree["fidelity_rows_total"]) == (36, 36)
    assert (oracle["fidelity_passed_total"], oracle["fidelity_rows_total"]) == (24, 24)
    assert tree["fidelity_passed_mean"] == 12 and tree["fidelity_rows_n"] == 3
    points = pd.read_csv(out / "points.csv")
    assert list(points["fidelity_rows"].fillna(-1)) == [12, 12, 12, -1, 12, 12]
    assert points["fidelity_check"].nunique() == 3
    assert outcome.table is not None and len(outcome.table) == 6


def test_resuming_a_seed_sweep_skips_complete_points(base, tmp_path):
    c, out = comparison(base, ["tree", "oracle"], DEFAULT, seeds=[1, 2]), tmp_path / "cmp"
    with pytest.raises(KeyboardInterrupt):
        go(c, out, FakeRunner(interrupt="p02"))
    assert pd.read_csv(out / "aggregate.csv")["runs"].tolist() == [1, 1]
    again = FakeRunner()
    outcome = go(c, out, again)
    assert again.ran == ["p02", "p03"] and outcome.kept == ["p00", "p01"]
    assert pd.read_csv(out / "aggregate.csv")["runs"].tolist() == [2, 2]


def test_a_sweep_file_with_a_seed_axis_is_aggregated_alike(base, tmp_path):
    sw = sweep_of({"delivery.cache_mb": [4, 16], "seed": [1, 2]})
    go(of_sweep(sw, base), tmp_path / "sweep", FakeRunner())
    agg = pd.read_csv(tmp_path / "sweep" / "aggregate.csv")
    assert list(agg["delivery.cache_mb"]) == [4, 16] and list(agg["runs"]) == [2, 2]
    assert list(agg["hit_ratio_mean"]) == pytest.approx([0.44, 0.56])


def test_one_seed_still_writes_aggregate_csv(base, tmp_path):
    go(grid(base), tmp_path / "sweep", FakeRunner())
    agg = pd.read_csv(tmp_path / "sweep" / "aggregate.csv")
    assert len(agg) == 4 and list(agg["runs"]) == [1] * 4
    assert agg["hit_ratio_ci95"].isna().all() and list(agg["hit_ratio_n"]) == [1] * 4
    assert list(agg["hit_ratio_mean"]) == pytest.approx([0.14, 0.26, 0.44, 0.56])


# -- require_fidelity ------------------------------------------------------------------------

def refused(c, out: Path, check: FakeChecker, run: FakeRunner | None = None) -> str:
    run = run or FakeRunner()
    with pytest.raises(FidelityRefused) as err:
        run_collection(c, out, run, check, say=lambda m: None, require_fidelity=True)
    assert run.calls == []  # nothing played
    msg = str(err.value)
    assert "\n" not in msg and "nothing played" in msg
    return msg


def test_require_fidelity_refuses_before_anything_plays(base, tmp_path):
    c, out = comparison(base, ["tree", "oracle"], DEFAULT, seeds=[1, 2, 3]), tmp_path / "cmp"
    check = FakeChecker(failing=(2,))
    msg = refused(c, out, check)
    assert len(check.paths) == 3  # every network was checked first
    bad = next(p for p in check.paths if json.loads(p.read_text())["summary"]["passed"] == 9)
    assert msg.startswith(f"fidelity check: 3 of 12 rows out of tolerance ({bad})")
    assert not (out / "points").exists()


def test_require_fidelity_names_every_failed_network(base, tmp_path):
    c, out = comparison(base, ["tree"], DEFAULT, seeds=[1, 2, 3]), tmp_path / "cmp"
    msg = refused(c, out, FakeChecker(failing=(1, 3)))
    assert msg.startswith("fidelity check: 2 of 3 networks failed, 6 of 24 rows out of "
                          "tolerance (")
    assert str(out / "fidelity") in msg


def test_require_fidelity_refuses_a_check_that_cannot_run(base, tmp_path):
    c, out = comparison(base, ["tree"], DEFAULT), tmp_path / "cmp"
    msg = refused(c, out, FakeChecker(broken=(1,)))
    key = network_key(base.with_overrides({"policy": "tree"}))
    assert msg.startswith("fidelity check: could not run (RuntimeError: no network here) "
                          f"({out / 'fidelity' / f'{key}.json'})")


def test_require_fidelity_refuses_a_stored_failed_check_and_plays_after_a_good_one(base,
                                                                                   tmp_path):
    c, out = comparison(base, ["tree", "oracle"], DEFAULT), tmp_path / "cmp"
    refused(c, out, FakeChecker(failing=(1,)))
    check = FakeChecker()
    refused(c, out, check)  # the stored report still says 3 rows failed
    assert check.paths == []
    for path in (out / "fidelity").glob("*.json"):
        path.unlink()
    run = FakeRunner()
    outcome = run_collection(c, out, run, check, say=lambda m: None, require_fidelity=True)
    assert run.ran == ["p00", "p01"] and outcome.failed == {} and len(check.paths) == 1
    assert all(call.fidelity["passed"] == 12 for call in run.calls)


def test_require_fidelity_needs_a_checker(base, tmp_path):
    with pytest.raises(CollectionError, match="needs a fidelity check"):
        run_collection(grid(base), tmp_path / "s", FakeRunner(), None, require_fidelity=True)


def test_without_require_fidelity_failed_checks_are_recorded_and_runs_go_ahead(base,
                                                                               tmp_path):
    c, out = comparison(base, ["tree"], DEFAULT, seeds=[1, 2]), tmp_path / "cmp"
    run = FakeRunner()
    go(c, out, run, FakeChecker(failing=(2,)))
    assert run.ran == ["p00", "p01"]
    agg = pd.read_csv(out / "aggregate.csv")
    assert (agg["fidelity_passed_total"].iloc[0], agg["fidelity_rows_total"].iloc[0]) == (21, 24)
