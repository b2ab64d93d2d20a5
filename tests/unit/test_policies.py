"""The ``policy:`` key: each policy fixes part of ``delivery`` and leaves the rest as the file
gave it; the file's own delivery survives a round trip, so policies can be swapped freely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testbed.scenario import (
    POLICIES,
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    parse_scenario,
)

SRC = "experiments/policy.yaml"
DEFAULT = Path(__file__).resolve().parents[2] / "experiments" / "default.yaml"
BASE = """
topology:
  generator: tiered
  params: {regions: 2, helpers_per_region: 2, viewers_per_region: 1, spread_pct: 0,
           tier_delays_ms: [3, 25]}
delivery: {cache_mb: 6, mesh_degree: 3, mesh_pull: false, prefetch: "next-segments",
           tiers: [10, 50]}
"""
GIVEN = {"mesh_degree": 3, "mesh_pull": False, "prefetch": "next-segments"}
#: What each policy makes of GIVEN.
EFFECTIVE = {
    "tree": {"mesh_degree": 0, "mesh_pull": False, "prefetch": "none"},
    "mesh-pull": {"mesh_degree": 3, "mesh_pull": True, "prefetch": "none"},
    "playhead": {"mesh_degree": 3, "mesh_pull": True, "prefetch": "playhead"},
    "popularity": {"mesh_degree": 3, "mesh_pull": True, "prefetch": "popularity"},
    "predictive": {"mesh_degree": 3, "mesh_pull": True, "prefetch": "predictive"},
    "oracle": {"mesh_degree": 3, "mesh_pull": True, "prefetch": "oracle"},
}
MESH_POLICIES = [p for p in POLICIES if p != "tree"]


def scenario(extra: str = "", base: str = BASE) -> Scenario:
    return loads_scenario(textwrap.dedent(base) + textwrap.dedent(extra), SRC)


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as err:
        loads_scenario(textwrap.dedent(text), SRC)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{SRC}: "), msg
    return msg


def fixed(sc: Scenario) -> dict:
    d = sc.delivery
    return {"mesh_degree": d.mesh_degree, "mesh_pull": d.mesh_pull, "prefetch": d.prefetch}


def test_every_policy_is_described():
    assert list(POLICIES) == list(EFFECTIVE)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_policy_fixes_its_part_of_delivery(policy):
    sc = scenario(f"policy: {policy}\n")
    assert sc.policy == policy
    assert fixed(sc) == EFFECTIVE[policy]
    # the rest of delivery is the file's
    assert sc.delivery.cache_mb == 6 and sc.delivery.tiers == (10.0, 50.0)
    assert sc.delivery.prefetch_policy == EFFECTIVE[policy]["prefetch"]


def test_no_policy_leaves_delivery_as_given():
    sc = scenario()
    assert sc.policy is None and fixed(sc) == GIVEN


def test_unknown_policy_is_one_line_naming_policy():
    msg = error_of(BASE + "policy: nope\n")
    assert msg.startswith(f"{SRC}: policy: 'nope' ")
    assert all(p in msg for p in POLICIES)


@pytest.mark.parametrize("policy", MESH_POLICIES)
def test_mesh_policy_needs_a_mesh(policy):
    msg = error_of(BASE.replace("mesh_degree: 3", "mesh_degree: 0") + f"policy: {policy}\n")
    assert msg.startswith(f"{SRC}: policy: {policy!r} ") and "mesh_degree is 0" in msg


def test_tree_needs_no_mesh():
    sc = scenario("policy: tree\n", BASE.replace("mesh_degree: 3", "mesh_degree: 0"))
    assert fixed(sc) == EFFECTIVE["tree"]


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_to_dict_round_trips_and_keeps_the_given_delivery(policy):
    sc = scenario("" if policy is None else f"policy: {policy}\n")
    d = sc.to_dict()
    assert d["policy"] == policy
    assert {k: d["delivery"][k] for k in GIVEN} == GIVEN  # not the preset
    assert d["delivery"]["cache_mb"] == 6 and d["delivery"]["tiers"] == [10.0, 50.0]
    again = parse_scenario(d, sc.source)
    assert again == sc
    assert again.to_dict() == d
    assert fixed(again) == (GIVEN if policy is None else EFFECTIVE[policy])


@pytest.mark.parametrize("policy", list(POLICIES))
def test_default_scenario_round_trips_with_every_policy(policy):
    base = load_scenario(DEFAULT)
    sc = base.with_overrides({"policy": policy})
    again = parse_scenario(sc.to_dict(), sc.source)
    assert again == sc and again.policy == policy
    assert again.to_dict()["delivery"] == base.to_dict()["delivery"]  # swapping keeps it


def test_policies_can_be_swapped_with_overrides():
    sc = scenario()
    tree = sc.with_overrides({"policy": "tree"})
    assert fixed(tree) == EFFECTIVE["tree"]
    predictive = tree.with_overrides({"policy": "predictive"})
    assert predictive.policy == "predictive"
    assert fixed(predictive) == EFFECTIVE["predictive"]  # the mesh is back, degree 3
    back = predictive.with_overrides({"policy": None})
    assert back.policy is None and fixed(back) == GIVEN


def test_overrides_of_delivery_under_a_policy_change_the_given_part():
    tree = scenario("policy: tree\n")
    bigger = tree.with_overrides({"delivery.mesh_degree": 4, "delivery.cache_mb": 9})
    assert fixed(bigger) == EFFECTIVE["tree"] and bigger.delivery.cache_mb == 9
    assert bigger.with_overrides({"policy": "mesh-pull"}).delivery.mesh_degree == 4


def test_unknown_policy_in_overrides_names_the_point():
    with pytest.raises(ScenarioError) as err:
        scenario().with_overrides({"policy": "nope"})
    msg = str(err.value)
    assert "\n" not in msg and "policy: 'nope'" in msg and "[policy='nope']" in msg


@pytest.mark.parametrize("policy", list(POLICIES))
def test_delivery_dict_gives_the_effective_settings(policy):
    sc = scenario(f"policy: {policy}\n")
    d = sc.delivery_dict()
    assert {k: d[k] for k in GIVEN} == EFFECTIVE[policy]
    assert d["cache_mb"] == 6 and d["tiers"] == [10.0, 50.0]  # plain data: a list
    assert set(d) == set(sc.to_dict()["delivery"])


def tuned(params: str) -> str:
    """BASE with ``delivery.prefetch_params`` set."""
    return textwrap.dedent(BASE).replace("tiers: [10, 50]}",
                                         f"tiers: [10, 50], prefetch_params: {params}}}")


def test_tuned_parameters_travel_with_the_policy_that_uses_them():
    params = "{popularity: {horizon_s: 30, min_expected: 0.2}, predictive: {min_expected: 0.4}}"
    sc = loads_scenario(tuned(params) + "policy: popularity\n", SRC)
    assert sc.delivery.prefetch == "popularity,horizon_s=30,min_expected=0.2"
    assert sc.delivery.prefetch_policy == "popularity"
    assert sc.with_overrides({"policy": "predictive"}).delivery.prefetch == \
        "predictive,min_expected=0.4"
    assert sc.with_overrides({"policy": "oracle"}).delivery.prefetch == "oracle"
    assert sc.with_overrides({"policy": "tree"}).delivery.prefetch == "none"
    assert parse_scenario(sc.to_dict(), SRC).delivery == sc.delivery


@pytest.mark.parametrize("params, message", [
    ("{psychic: {x: 1}}", "delivery.prefetch_params.psychic: 'psychic' (unknown policy"),
    ("{popularity: {horizon_s: 0.1}}", "popularity horizon_s must be a number of seconds"),
    ("{predictive: {lookahead: 2}}", "unknown parameter 'lookahead'"),
    ("{predictive: 3}", "must map parameter names to numbers"),
])
def test_bad_tuned_parameters_are_one_line(params, message):
    assert message in error_of(tuned(params))
