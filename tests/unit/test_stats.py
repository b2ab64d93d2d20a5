"""Repeated runs as one figure each: mean, 95 % Student-t interval and n over seeds, from a
hand-made points table; and the fidelity verdict of a set of runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from testbed.harness.stats import (
    DASH,
    aggregate,
    aggregate_verdict,
    fidelity_columns,
    mean_ci,
    mean_ci_text,
    seed_count,
    t975,
    verdict,
)

NAN = float("nan")


def points(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"point": [f"p{i:02d}" for i in range(n)], "dir": [f"points/p{i:02d}" for i in range(n)],
            "status": ["complete"] * n}
    return pd.DataFrame({**base, **cols})


# -- the interval ------------------------------------------------------------------------------

def test_t_quantiles_are_exact():
    assert t975(1) == pytest.approx(12.706204736)
    assert t975(2) == pytest.approx(4.302652730)
    assert t975(9) == pytest.approx(2.262157163)
    assert t975(1000) == pytest.approx(1.962339, abs=1e-6)


def test_mean_ci_of_known_numbers():
    mean, ci, n = mean_ci([1, 2, 3])
    assert (mean, n) == (2.0, 3)
    assert ci == pytest.approx(4.302652729749462 / math.sqrt(3))
    assert ci == pytest.approx(2.4842, abs=1e-4)
    mean, ci, n = mean_ci([10.0, 12.0])
    assert (mean, n) == (11.0, 2) and ci == pytest.approx(12.706204736)  # sd = sqrt(2), n = 2


def test_mean_ci_drops_nan_and_needs_two_values_for_an_interval():
    mean, ci, n = mean_ci([1.0, NAN, 3.0, None])
    assert (mean, n) == (2.0, 2) and ci == pytest.approx(12.706204736 * math.sqrt(2) / math.sqrt(2))
    mean, ci, n = mean_ci([5.0])
    assert (mean, n) == (5.0, 1) and math.isnan(ci)
    mean, ci, n = mean_ci([NAN, NAN])
    assert n == 0 and math.isnan(mean) and math.isnan(ci)
    assert mean_ci([4.0, 4.0, 4.0]) == (4.0, 0.0, 3)


# -- aggregate -----------------------------------------------------------------------------------

def two_policies() -> pd.DataFrame:
    """tree and oracle on seeds 1..3; oracle's seed 3 failed; oracle's seed 2 has no
    startup (NaN); cpu_trusted as read back from CSV (strings beside NaN)."""
    return points(
        policy=["tree", "tree", "tree", "oracle", "oracle", "oracle"],
        seed=[1, 2, 3, 1, 2, 3],
        status=["complete"] * 5 + ["failed"],
        hit_ratio=[1.0, 2.0, 3.0, 0.5, 0.7, NAN],
        startup_p95_s=[1.0, 1.0, 1.0, 2.0, NAN, NAN],
        cpu_trusted=[True, False, True, "True", "True", NAN],
        link_mode=["netem"] * 5 + [NAN],
        tiers=['{"h1": 1}'] * 5 + [NAN],
        fidelity_passed=[9, 10, 11, 9, 10, NAN],
        fidelity_rows=[25, 25, 25, 25, 25, NAN],
        fidelity_check=["n1", "n2", "n3", "n1", "n2", NAN],
    )


def test_aggregate_one_row_per_policy_with_mean_ci_and_n():
    agg = aggregate(two_policies(), ["policy", "seed"])
    assert list(agg["policy"]) == ["tree", "oracle"]
    assert list(agg.columns[:6]) == ["policy", "runs", "left_out", "fidelity_passed_total",
                                     "fidelity_rows_total", "cpu_trusted_runs"]
    assert list(agg.columns[6:9]) == ["hit_ratio_mean", "hit_ratio_ci95", "hit_ratio_n"]
    tree, oracle = agg.iloc[0], agg.iloc[1]
    assert tree["hit_ratio_mean"] == 2.0 and tree["hit_ratio_n"] == 3
    assert tree["hit_ratio_ci95"] == pytest.approx(2.4842, abs=1e-4)
    assert oracle["hit_ratio_mean"] == pytest.approx(0.6) and oracle["hit_ratio_n"] == 2
    assert oracle["startup_p95_s_n"] == 1 and math.isnan(oracle["startup_p95_s_ci95"])
    assert tree["startup_p95_s_ci95"] == 0.0


def test_failed_points_are_left_out_and_counted():
    tree, oracle = aggregate(two_policies(), ["policy", "seed"]).itertuples(index=False)
    assert (tree.runs, tree.left_out) == (3, 0)
    assert (oracle.runs, oracle.left_out) == (2, 1)


def test_booleans_aggregate_as_the_share_of_true():
    agg = aggregate(two_policies(), ["policy", "seed"])
    assert agg["cpu_trusted_mean"].tolist() == pytest.approx([2 / 3, 1.0])
    assert agg["cpu_trusted_n"].tolist() == [3, 2]
    assert agg["cpu_trusted_runs"].tolist() == [2, 2]


def test_strings_seed_and_bookkeeping_are_not_metrics():
    agg = aggregate(two_policies(), ["policy", "seed"])
    for col in ("link_mode", "tiers", "seed", "point", "dir", "status", "fidelity_check",
                "policy"):
        assert f"{col}_mean" not in agg.columns, col


def test_fidelity_totals_add_distinct_checks():
    agg = aggregate(two_policies(), ["policy", "seed"])
    assert agg["fidelity_passed_total"].tolist() == [30, 19]
    assert agg["fidelity_rows_total"].tolist() == [75, 50]
    assert agg["fidelity_passed_mean"].tolist() == pytest.approx([10, 9.5])


def test_one_seed_gives_n_1_and_no_interval():
    p = points(policy=["tree", "oracle"], hit_ratio=[0.2, 0.4], seed=[7, 7])
    agg = aggregate(p, ["policy"])
    assert agg["hit_ratio_mean"].tolist() == [0.2, 0.4]
    assert agg["hit_ratio_n"].tolist() == [1, 1] and agg["hit_ratio_ci95"].isna().all()
    assert agg["runs"].tolist() == [1, 1]
    assert seed_count(p, ["policy"]) == 1


def test_several_axes_and_an_axis_of_seeds_only():
    p = points(policy=["a", "a", "b", "b"] * 2, cache=[4, 4, 4, 4, 8, 8, 8, 8],
               seed=[1, 2] * 4, x=[1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 6.0, 8.0])
    agg = aggregate(p, ["cache", "policy", "seed"])
    assert agg[["cache", "policy"]].values.tolist() == [[4, "a"], [4, "b"], [8, "a"], [8, "b"]]
    assert agg["x_mean"].tolist() == [2.0, 6.0, 3.0, 7.0]
    only = aggregate(p, ["seed"])
    assert len(only) == 1 and only["runs"].iloc[0] == 8 and only["x_mean"].iloc[0] == 4.5
    assert seed_count(p, ["cache", "policy", "seed"]) == 2


def test_a_group_with_no_complete_point_stays_with_dashes():
    p = points(policy=["tree", "oracle"], seed=[1, 1], status=["complete", "failed"],
               hit_ratio=[0.5, NAN])
    agg = aggregate(p, ["policy", "seed"])
    assert agg["runs"].tolist() == [1, 0] and agg["left_out"].tolist() == [0, 1]
    assert math.isnan(agg["hit_ratio_mean"].iloc[1]) and agg["hit_ratio_n"].iloc[1] == 0
    assert math.isnan(agg["fidelity_rows_total"].iloc[1])


def test_nothing_complete_yet():
    p = points(policy=["tree"], seed=[1], status=["pending"])
    agg = aggregate(p, ["policy", "seed"])
    assert agg["runs"].tolist() == [0] and agg["left_out"].tolist() == [1]


def test_aggregate_survives_a_csv_round_trip(tmp_path):
    p = two_policies()
    p.to_csv(tmp_path / "points.csv", index=False)
    back = pd.read_csv(tmp_path / "points.csv")
    pd.testing.assert_frame_equal(aggregate(back, ["policy", "seed"]),
                                  aggregate(p, ["policy", "seed"]), check_dtype=False)


# -- the verdict ---------------------------------------------------------------------------------

def test_verdict_counts_each_check_once():
    done = two_policies().iloc[:5]
    v = verdict(done)
    assert (v.passed, v.rows, v.checks, v.unchecked, v.trusted, v.runs) == (30, 75, 3, 0, 4, 5)
    assert v.text() == ("fidelity: 30/75 rows within tolerance (3 networks); CPU-trusted: "
                        "4/5 runs")


def test_verdict_line_of_one_network_and_of_none():
    p = points(policy=list("abcde"), fidelity_passed=[9] * 5, fidelity_rows=[25] * 5,
               fidelity_check=["k"] * 5, cpu_trusted=[False] * 5)
    assert verdict(p).text() == "fidelity: 9/25 rows within tolerance; CPU-trusted: 0/5 runs"
    assert (verdict(p).fidelity_cell(), verdict(p).trusted_cell()) == ("9/25", "0/5")
    bare = points(policy=["a", "b"])
    assert verdict(bare).text() == "fidelity: not checked; CPU-trusted: not recorded"
    assert (verdict(bare).fidelity_cell(), verdict(bare).trusted_cell()) == (DASH, DASH)
    mixed = points(policy=["a", "b"], fidelity_passed=[12, NAN], fidelity_rows=[12, NAN],
                   cpu_trusted=[True, True])
    assert verdict(mixed).text() == ("fidelity: 12/12 rows within tolerance, 1 runs not "
                                     "checked; CPU-trusted: 2/2 runs")


def test_verdict_without_check_ids_counts_every_run():
    p = points(policy=["a", "b"], fidelity_passed=[3, 4], fidelity_rows=[5, 5])
    assert (verdict(p).passed, verdict(p).rows) == (7, 10)


def test_aggregate_verdict_reads_an_aggregate_row():
    row = aggregate(two_policies(), ["policy", "seed"]).iloc[1]
    v = aggregate_verdict(row)
    assert (v.fidelity_cell(), v.trusted_cell()) == ("19/50", "2/2")
    assert aggregate_verdict({"runs": 2}).fidelity_cell() == DASH


def test_fidelity_columns_of_a_manifest():
    m = {"fidelity": {"passed": 9, "measurements": 25, "failed": [],
                      "source": "/x/fidelity/abc123.json"}}
    assert fidelity_columns(m) == {"fidelity_passed": 9, "fidelity_rows": 25,
                                   "fidelity_check": "abc123"}
    assert fidelity_columns({"fidelity": None}) == {} and fidelity_columns(None) == {}


# -- the cell --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "shown"), [
    ((0.5, 0.0123, 3, 3), "0.5 ± 0.0123"),
    ((0.5, NAN, 1, 1), "0.5"),
    ((0.5, 0.1, 2, 3), "0.5 ± 0.1 (n=2)"),
    ((NAN, NAN, 0, 3), DASH),
    ((np.float64(2.0), np.float64(2.4842), np.int64(3), 3), "2 ± 2.484"),
])
def test_mean_ci_text(args, shown):
    def show(v):
        return f"{float(v):.4g}"
    assert mean_ci_text(*args, show) == shown
