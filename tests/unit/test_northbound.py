"""The northbound API's pure core: every endpoint, every kind of bad request, fuzzing."""

from __future__ import annotations

import json
import math
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.core.l2 import NetView
from testbed.core.linkmetrics import MetricGraph, PortRate
from testbed.core.northbound import (
    MAX_BODY_BYTES,
    MAX_TIER,
    MeshChange,
    NorthboundError,
    NorthboundState,
    TierChange,
    decode_body,
    encode,
    group_address,
    mesh_pairs,
    multicast_snapshot,
    paths_snapshot,
    topology_snapshot,
)

HELPERS = ("h1", "h2", "h3", "h4", "h5")
TIERS = {"h1": 1, "h2": 1, "h3": 2, "h4": 2, "h5": 3}


def topology() -> dict:
    """Three switches in a triangle; a master, five helpers and a viewer."""
    switches = {f"s{i}": {"dpid": i, "ports": {f"s{i}-eth{p}": p for p in range(1, 6)}}
                for i in (1, 2, 3)}
    placed = [("m1", "master", "s1", 1), ("h1", "helper", "s1", 2), ("h2", "helper", "s2", 1),
              ("h3", "helper", "s2", 2), ("h4", "helper", "s3", 1), ("h5", "helper", "s3", 2),
              ("v1", "viewer", "s3", 3)]
    hosts = {name: {"ip": f"10.0.0.{n}", "mac": f"00:00:00:00:00:{n:02x}", "switch": sw,
                    "port": port, "role": role}
             for n, (name, role, sw, port) in enumerate(placed, start=1)}
    links = [{"a": "s1", "a_port": 4, "b": "s2", "b_port": 4, "delay_ms": 5.0, "bw_mbit": 10},
             {"a": "s2", "a_port": 5, "b": "s3", "b_port": 4, "delay_ms": 10.0},
             {"a": "s1", "a_port": 5, "b": "s3", "b_port": 5, "delay_ms": 40.0, "bw_mbit": 20}]
    return {"switches": switches, "hosts": hosts, "links": links}


@pytest.fixture
def view() -> NetView:
    return NetView.from_dict(topology())


@pytest.fixture
def state(view: NetView) -> NorthboundState:
    return NorthboundState(view)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def snapshot(state: NorthboundState) -> tuple:
    """Everything a request could change, as the API shows it."""
    return (state.get("/mesh/neighbours"), state.get("/tiers"), state.get("/health"),
            state.get("/paths"))


def refused(state: NorthboundState, method: str, path: str, data: bytes, status: int,
            fragment: str) -> None:
    """The request gets ``status`` with a message containing ``fragment``; nothing moved."""
    before = snapshot(state)
    got, doc = state.handle(method, path, data)
    assert (got, fragment in doc.get("error", "")) == (status, True), doc
    assert list(doc) == ["error"] and "\n" not in doc["error"]
    assert snapshot(state) == before


# --------------------------------------------------------------------------- reads


def test_health(state: NorthboundState) -> None:
    assert state.get("/health") == (200, {
        "status": "ok", "switches": 3, "hosts": 7, "helpers": 5, "mesh_pairs": 0,
        "tiers_version": 0, "listener_errors": 0})


def test_topology_shows_configured_metrics_by_default(state: NorthboundState) -> None:
    status, doc = state.get("/topology")
    assert status == 200 and set(doc) == {"switches", "hosts", "links", "access"}
    assert doc["switches"]["s2"]["dpid"] == 2
    assert doc["hosts"]["h3"] == {"ip": "10.0.0.4", "mac": "00:00:00:00:00:04",
                                  "switch": "s2", "port": 2, "role": "helper"}
    assert [(k["a"], k["b"]) for k in doc["links"]] == [("s1", "s2"), ("s1", "s3"), ("s2", "s3")]
    first = doc["links"][0]
    assert first == {"a": "s1", "a_port": 4, "b": "s2", "b_port": 4, "delay_ms": 5.0,
                     "bw_mbit": 10.0, "avail_mbit": 10.0, "util": 0.0, "ab_mbit": None,
                     "ba_mbit": None, "up": True}
    assert ("h3", "s2") in {(k["a"], k["b"]) for k in doc["access"]}
    unknown = json.loads(encode(doc))["links"][2]  # no capacity: unconstrained -> null
    assert (unknown["bw_mbit"], unknown["avail_mbit"], unknown["util"]) == (None, None, None)


def test_topology_with_measured_metrics(view: NetView) -> None:
    mg = MetricGraph.from_view(view)
    mg.update_delay("s1", "s2", 7.0)
    mg.update_delay("s2", "s1", 9.0)
    mg.set_up("s1", "s3", False)
    st = NorthboundState(view, topology=lambda: topology_snapshot(view, mg.graph))
    links = {(k["a"], k["b"]): k for k in st.get("/topology")[1]["links"]}
    assert links["s1", "s2"]["delay_ms"] == pytest.approx(8.0)
    assert links["s1", "s3"]["up"] is False and links["s2", "s3"]["up"] is True


def test_topology_shows_each_direction_s_measured_rate(view: NetView) -> None:
    mg = MetricGraph.from_view(view)
    port = mg.graph.edges["s1", "s2"]["ports"]["s1"]
    mg.update_port("s1", port, PortRate(tx_bps=3e6, rx_bps=1e6, capacity_mbit=10.0))
    st = NorthboundState(view, topology=lambda: topology_snapshot(view, mg.graph))
    links = {(k["a"], k["b"]): k for k in st.get("/topology")[1]["links"]}
    assert links["s1", "s2"]["ab_mbit"] == pytest.approx(3.0)   # sent by s1 towards s2
    assert links["s1", "s2"]["ba_mbit"] == pytest.approx(1.0)
    assert links["s1", "s2"]["avail_mbit"] == pytest.approx(7.0)


def tree_for(group: str) -> nx.DiGraph:
    tree = nx.DiGraph(root="s1", source="m1", unreachable=["h5"])
    tree.add_edge("s1", "s2", port=4, in_port=4)
    tree.add_edge("s2", "h2", port=1)
    tree.add_edge("s1", "h1", port=2)
    return tree


def test_multicast_groups_members_and_trees(view: NetView) -> None:
    members = {"239.1.1.1": {"h2", "h1", "h5"}, "224.0.1.5": {"h4"}}
    st = NorthboundState(view, multicast=lambda: multicast_snapshot(
        members, {"239.1.1.1": tree_for("239.1.1.1")}))
    status, doc = st.get("/multicast")
    assert status == 200 and list(doc["groups"]) == ["224.0.1.5", "239.1.1.1"]
    assert doc["groups"]["224.0.1.5"] == {"members": ["h4"], "root": None, "source": None,
                                          "edges": [], "unreachable": []}
    group = doc["groups"]["239.1.1.1"]
    assert group["members"] == ["h1", "h2", "h5"] and group["unreachable"] == ["h5"]
    assert (group["root"], group["source"]) == ("s1", "m1")
    assert group["edges"] == [{"from": "s1", "to": "h1", "port": 2},
                              {"from": "s1", "to": "s2", "port": 4},
                              {"from": "s2", "to": "h2", "port": 1}]
    assert st.get("/multicast/239.1.1.1") == (200, {"group": "239.1.1.1", **group})


def test_multicast_is_empty_by_default(state: NorthboundState) -> None:
    assert state.get("/multicast") == (200, {"groups": {}})


@pytest.mark.parametrize("path, status, fragment", [
    ("/multicast/224.2.2.2", 404, "unknown group 224.2.2.2"),
    ("/multicast/foo", 400, "'foo' is not an IPv4 address"),
    ("/multicast/224.1.1", 400, "'224.1.1' is not an IPv4 address"),
    ("/multicast/10.0.0.1", 422, "10.0.0.1 is not a multicast address"),
    ("/multicast/240.0.0.1", 422, "240.0.0.1 is not a multicast address"),
    ("/multicast/224.0.0.22", 422, "224.0.0.22 is link-local"),
])
def test_bad_groups(state: NorthboundState, path: str, status: int, fragment: str) -> None:
    refused(state, "GET", path, b"", status, fragment)


def test_group_address_validator() -> None:
    assert group_address("239.255.0.1") == "239.255.0.1"
    assert group_address("224.0.1.0") == "224.0.1.0"
    with pytest.raises(NorthboundError) as info:
        group_address(3)
    assert info.value.status == 400 and "must be a string, not number" in info.value.message


def test_paths_default_lists_mesh_pairs_without_paths(state: NorthboundState) -> None:
    assert state.get("/paths") == (200, {"paths": []})
    state.set_neighbours("h2", ["h1"])
    assert state.get("/paths") == (200, {"paths": [
        {"a": "h1", "b": "h2", "path": None, "delay_ms": None}]})


def test_paths_snapshot_orients_paths_and_sums_delays(view: NetView) -> None:
    g = MetricGraph.from_view(view).graph
    doc = paths_snapshot({("h4", "h1"): ["h4", "s3", "s2", "s1", "h1"],
                          ("h2", "h3"): ["h2", "s2", "h3"],
                          ("h1", "h5"): ["h1", "s9", "h5"]},
                         g, pairs=[("h3", "h1")])
    assert doc["paths"] == [
        {"a": "h1", "b": "h3", "path": None, "delay_ms": None},
        {"a": "h1", "b": "h4", "path": ["h1", "s1", "s2", "s3", "h4"], "delay_ms": 15.0},
        {"a": "h1", "b": "h5", "path": ["h1", "s9", "h5"], "delay_ms": None},
        {"a": "h2", "b": "h3", "path": ["h2", "s2", "h3"], "delay_ms": 0.0},
    ]


# --------------------------------------------------------------------------- mesh


def test_mesh_read_write_and_symmetric_pairs(state: NorthboundState) -> None:
    assert state.get("/mesh/neighbours") == (200, {
        "k": 3, "neighbours": {h: [] for h in HELPERS}, "pairs": []})
    status, doc = state.put("/mesh/neighbours/h1", body({"neighbours": ["h3", "h2"]}))
    assert status == 200
    assert doc == {"helper": "h1", "k": 3, "neighbours": ["h2", "h3"], "peers": ["h2", "h3"],
                   "changed": True, "added": [["h1", "h2"], ["h1", "h3"]], "removed": []}
    status, doc = state.put("/mesh/neighbours/h3", body({"neighbours": ["h1", "h4"]}))
    assert doc["added"] == [["h3", "h4"]] and doc["peers"] == ["h1", "h4"]
    assert state.get("/mesh/neighbours/h2") == (200, {
        "helper": "h2", "k": 3, "neighbours": [], "peers": ["h1"]})
    # h1 drops h3, but h3 still lists h1: the pair stays
    status, doc = state.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))
    assert (doc["added"], doc["removed"], doc["peers"]) == ([], [], ["h2", "h3"])
    status, doc = state.put("/mesh/neighbours/h3", body({"neighbours": []}))
    assert doc["removed"] == [["h1", "h3"], ["h3", "h4"]]
    assert state.get("/mesh/neighbours")[1]["pairs"] == [["h1", "h2"]]
    assert state.pairs == (("h1", "h2"),) and state.peers("h2") == ("h1",)
    assert state.get("/mesh/neighbours/h1/")[0] == 200  # one trailing slash is forgiven


def test_mesh_pairs_are_the_union_of_declarations() -> None:
    assert mesh_pairs({"h2": ["h1", "h10"], "h1": ["h2"], "h10": []}) == (
        ("h1", "h2"), ("h2", "h10"))


def test_same_neighbours_again_is_no_change(state: NorthboundState) -> None:
    heard: list = []
    state.add_listener(heard.append)
    state.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))
    status, doc = state.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))
    assert status == 200 and doc["changed"] is False and len(heard) == 1


BAD_MESH = [
    # malformed or wrongly typed: 400
    (b'{"neighbours": ["h2"', 400, "body: not valid JSON"),
    (b"", 400, "body: empty"),
    (b"  \n", 400, "body: empty"),
    (b"\xff\xfe", 400, "body: not UTF-8"),
    (b'["h2"]', 400, "body: must be a JSON object with key neighbours, not array"),
    (b"{}", 400, "body: missing key 'neighbours'"),
    (body({"neighbours": [], "extra": 1}), 400, "body: unknown key 'extra'"),
    (body({"neighbours": "h2"}), 400, "neighbours: must be an array of helper names, not string"),
    (body({"neighbours": {"h2": 1}}), 400, "neighbours: must be an array"),
    (body({"neighbours": ["h2", 7]}), 400, "neighbours[1]: must be a helper name (string), "
                                           "not number 7"),
    (body({"neighbours": [None]}), 400, "neighbours[0]: must be a helper name (string), not null"),
    (b'{"neighbours": [], "neighbours": ["h2"]}', 400, "key 'neighbours' appears twice"),
    (b'{"neighbours": [NaN]}', 400, "NaN is not a JSON number"),
    (b"[" * 50000, 400, "body: nested too deeply"),
    # unknown names: 404
    (body({"neighbours": ["h9"]}), 404, "neighbours[0]: unknown host 'h9'"),
    # semantically invalid: 422
    (body({"neighbours": ["v1"]}), 422, "neighbours[0]: v1 is a viewer, not a helper"),
    (body({"neighbours": ["m1"]}), 422, "neighbours[0]: m1 is a master, not a helper"),
    (body({"neighbours": ["h2", "h1"]}), 422, "neighbours[1]: h1 is the helper itself"),
    (body({"neighbours": ["h2", "h3", "h2"]}), 422, "neighbours[2]: h2 is listed twice"),
    (body({"neighbours": ["h2", "h3", "h4", "h5"]}), 422,
     "neighbours: 4 helpers for h1, more than the degree limit k=3"),
]


@pytest.mark.parametrize("data, status, fragment", BAD_MESH)
def test_bad_neighbour_bodies(state: NorthboundState, data: bytes, status: int,
                              fragment: str) -> None:
    state.put("/mesh/neighbours/h2", body({"neighbours": ["h3"]}))
    refused(state, "PUT", "/mesh/neighbours/h1", data, status, fragment)


@pytest.mark.parametrize("helper, status, fragment", [
    ("h9", 404, "helper: unknown host 'h9'"),
    ("v1", 404, "helper: v1 is a viewer, not a helper"),
    ("m1", 404, "helper: m1 is a master, not a helper"),
])
def test_unknown_helper_in_the_path(state: NorthboundState, helper: str, status: int,
                                    fragment: str) -> None:
    refused(state, "PUT", f"/mesh/neighbours/{helper}", body({"neighbours": []}), status,
            fragment)
    refused(state, "GET", f"/mesh/neighbours/{helper}", b"", status, fragment)


def test_degree_of_the_other_end_is_a_conflict(state: NorthboundState) -> None:
    for helper in ("h3", "h4", "h5"):
        assert state.put(f"/mesh/neighbours/{helper}", body({"neighbours": ["h2"]}))[0] == 200
    refused(state, "PUT", "/mesh/neighbours/h1", body({"neighbours": ["h2"]}), 409,
            "h2 would have 4 mesh peers (h1, h3, h4, h5), more than the degree limit k=3")
    # the helper's own degree counts those who list it too
    refused(state, "PUT", "/mesh/neighbours/h2", body({"neighbours": ["h1"]}), 409,
            "h2 would have 4 mesh peers")


def test_degree_limit_is_configurable(view: NetView) -> None:
    st = NorthboundState(view, max_degree=1)
    refused(st, "PUT", "/mesh/neighbours/h1", body({"neighbours": ["h2", "h3"]}), 422,
            "more than the degree limit k=1")
    assert st.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))[0] == 200
    with pytest.raises(ValueError, match="max_degree"):
        NorthboundState(view, max_degree=0)


def test_oversize_body(view: NetView) -> None:
    st = NorthboundState(view, max_body=32)
    refused(st, "PUT", "/mesh/neighbours/h1", body({"neighbours": ["h2", "h3", "h4"]}), 413,
            "body: larger than the limit of 32 bytes")
    assert st.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))[0] == 200
    big = body({"tiers": TIERS, "pad": "x" * MAX_BODY_BYTES})
    refused(NorthboundState(view), "PUT", "/tiers", big, 413, f"limit of {MAX_BODY_BYTES} bytes")


def test_listeners_hear_accepted_mesh_changes_only(state: NorthboundState) -> None:
    heard: list = []
    state.add_listener(heard.append)
    state.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))
    state.put("/mesh/neighbours/h1", body({"neighbours": ["h9"]}))  # refused
    state.put("/mesh/neighbours/h2", body({"neighbours": ["h3"]}))
    assert heard == [
        MeshChange("h1", ("h2",), (("h1", "h2"),), (("h1", "h2"),), ()),
        MeshChange("h2", ("h3",), (("h1", "h2"), ("h2", "h3")), (("h2", "h3"),), ()),
    ]
    state.remove_listener(heard.append)
    state.put("/mesh/neighbours/h2", body({"neighbours": []}))
    assert len(heard) == 2


def test_set_neighbours_validates_like_a_request(state: NorthboundState) -> None:
    change = state.set_neighbours("h1", ("h3", "h2"))
    assert change is not None and change.neighbours == ("h2", "h3")
    with pytest.raises(NorthboundError) as info:
        state.set_neighbours("h1", ["h1"])
    assert info.value.status == 422
    assert state.neighbours["h1"] == ("h2", "h3")


# --------------------------------------------------------------------------- tiers


def test_tiers_read_write_and_versions(state: NorthboundState) -> None:
    heard: list = []
    state.add_listener(heard.append)
    assert state.get("/tiers") == (200, {"version": 0, "tiers": {}})
    status, doc = state.put("/tiers", body({"tiers": TIERS}))
    assert (status, doc) == (200, {"version": 1, "tiers": TIERS, "previous_version": 0})
    status, doc = state.put("/tiers", body({"tiers": {**TIERS, "h5": 1}, "version": 7}))
    assert (doc["version"], doc["previous_version"], doc["tiers"]["h5"]) == (7, 1, 1)
    assert state.put("/tiers", body({"tiers": TIERS}))[1]["version"] == 8
    assert state.get("/tiers") == (200, {"version": 8, "tiers": TIERS})
    assert state.tiers_version == 8 and state.tiers == TIERS
    assert [c.version for c in heard] == [1, 7, 8]
    assert heard[1] == TierChange({**TIERS, "h5": 1}, 7, 1)


BAD_TIERS = [
    (b'{"tiers": {', 400, "body: not valid JSON"),
    (body([TIERS]), 400, "body: must be a JSON object with key tiers, version, not array"),
    (body({"version": 3}), 400, "body: missing key 'tiers'"),
    (body({"tiers": TIERS, "ttl": 3}), 400, "body: unknown key 'ttl'"),
    (body({"tiers": [1, 2]}), 400, "tiers: must be an object of helper -> tier, not array"),
    (body({"tiers": {**TIERS, "h3": "2"}}), 400, "tiers.h3: must be an integer, not string '2'"),
    (body({"tiers": {**TIERS, "h3": 2.0}}), 400, "tiers.h3: must be an integer, not number 2.0"),
    (body({"tiers": {**TIERS, "h3": True}}), 400, "tiers.h3: must be an integer, not boolean"),
    (body({"tiers": {**TIERS, "h3": None}}), 400, "tiers.h3: must be an integer, not null"),
    (b'{"tiers": {"h1": 1, "h2": 1, "h3": 2, "h4": 2, "h5": 3, "h1": 2}}', 400,
     "key 'h1' appears twice"),
    (body({"tiers": TIERS, "version": "9"}), 400, "version: must be an integer, not string"),
    (body({"tiers": TIERS, "version": None}), 400, "version: must be an integer, not null"),
    (body({"tiers": TIERS, "version": True}), 400, "version: must be an integer, not boolean"),
    (body({"tiers": {**TIERS, "h9": 1}}), 404, "tiers: unknown host 'h9'"),
    (body({"tiers": {**TIERS, "v1": 1}}), 422, "tiers.v1: v1 is a viewer, not a helper"),
    (body({"tiers": {**TIERS, "h3": 0}}), 422, "tiers.h3: 0 (must be a positive integer"),
    (body({"tiers": {**TIERS, "h3": -2}}), 422, "tiers.h3: -2 (must be a positive integer"),
    (body({"tiers": {**TIERS, "h3": MAX_TIER + 1}}), 422, "tiers.h3: 2147483648"),
    (body({"tiers": {"h1": 1, "h2": 1, "h3": 2}}), 422,
     "tiers: missing helper h4, h5 (every helper needs a tier)"),
    (body({"tiers": TIERS, "version": 0}), 422, "version: 0 (must be in 1.."),
    (body({"tiers": TIERS, "version": 5}), 409, "version: 5 is not newer than the current "
                                                "version 5"),
    (body({"tiers": TIERS, "version": 2}), 409, "version: 2 is not newer"),
]


@pytest.mark.parametrize("data, status, fragment", BAD_TIERS)
def test_bad_tier_bodies(state: NorthboundState, data: bytes, status: int,
                         fragment: str) -> None:
    state.set_tiers(TIERS, version=5)
    refused(state, "PUT", "/tiers", data, status, fragment)


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("path", ["/", "", "topology", "/nope", "/mesh", "/mesh/neighbours/h1/x",
                                  "//topology", "/topology//", "/multicast/239.1.1.1/x",
                                  "/TIERS", "/tiers?x=1"])
def test_unknown_paths(state: NorthboundState, path: str) -> None:
    for method in ("GET", "PUT"):
        refused(state, method, path, body({"neighbours": []}), 404,
                "no such resource")
    status, doc = state.get("/nope")
    assert "(endpoints: /health, /topology, /multicast, /multicast/<group>, /mesh/neighbours, " \
           "/mesh/neighbours/<helper>, /paths, /tiers)" in doc["error"]


@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/tiers", ("GET", "PUT")),
    ("DELETE", "/mesh/neighbours/h1", ("GET", "PUT")),
    ("PUT", "/topology", ("GET",)),
    ("PUT", "/health", ("GET",)),
    ("PATCH", "/mesh/neighbours", ("GET",)),
    ("get", "/paths", ("GET",)),
    ("HEAD", "/multicast", ("GET",)),
])
def test_wrong_methods(state: NorthboundState, method: str, path: str,
                       allowed: tuple) -> None:
    refused(state, method, path, body({"tiers": TIERS}), 405,
            f"method {method!r} not allowed on {path!r} (allowed: {', '.join(allowed)})")
    assert state.allowed_methods(path) == allowed
    assert state.allowed_methods("/nope") == ()


def test_trailing_slash_and_endpoints(state: NorthboundState) -> None:
    assert state.get("/tiers/")[0] == 200
    assert "/mesh/neighbours/<helper>" in state.endpoints()


# --------------------------------------------------------------------------- faults


def test_a_failing_provider_is_503_and_harmless(view: NetView) -> None:
    def broken() -> dict:
        raise KeyError("s7")

    st = NorthboundState(view, paths=broken)
    assert st.get("/paths") == (503, {"error": "paths snapshot unavailable (KeyError: 's7')"})
    assert st.get("/health")[0] == 200
    assert st.put("/mesh/neighbours/h1", body({"neighbours": ["h2"]}))[0] == 200


def test_a_failing_listener_neither_refuses_nor_undoes(state: NorthboundState) -> None:
    def broken(change: object) -> None:
        raise RuntimeError("boom")

    heard: list = []
    state.add_listener(broken)
    state.add_listener(heard.append)
    assert state.put("/tiers", body({"tiers": TIERS}))[0] == 200
    assert state.tiers_version == 1 and len(heard) == 1
    assert state.get("/health")[1]["listener_errors"] == 1


def test_faults_go_to_on_error_and_every_listener_still_hears(view: NetView) -> None:
    faults: list = []

    def broken(change: object) -> None:
        raise RuntimeError("boom")

    def no_paths() -> dict:
        raise KeyError("s7")

    heard: list = []
    st = NorthboundState(view, paths=no_paths,
                         on_error=lambda what, exc: faults.append((what, exc)))
    st.add_listener(broken)
    st.add_listener(heard.append)
    st.add_listener(broken)
    assert st.put("/tiers", body({"tiers": TIERS}))[0] == 200
    assert len(heard) == 1 and st.listener_errors == 2
    assert st.get("/paths")[0] == 503
    assert [what.split(" ", 1)[0] for what, _ in faults] == ["listener", "listener", "paths"]
    assert faults[0][0].endswith("failed on TierChange")
    assert all(isinstance(e, RuntimeError) for _, e in faults[:2])
    assert isinstance(faults[2][1], KeyError)


def test_a_failing_fault_handler_is_harmless(view: NetView) -> None:
    def handler(what: str, exc: BaseException) -> None:
        raise ValueError("handler down")

    def no_paths() -> dict:
        raise KeyError("s7")

    st = NorthboundState(view, paths=no_paths, on_error=handler)
    st.add_listener(lambda change: 1 / 0)
    assert st.put("/tiers", body({"tiers": TIERS}))[0] == 200
    assert st.get("/paths")[0] == 503
    assert st.listener_errors == 1


def test_error_status_must_be_4xx() -> None:
    assert NorthboundError(404, "x").response() == (404, {"error": "x"})
    for status in (200, 399, 500):
        with pytest.raises(ValueError):
            NorthboundError(status, "x")


def test_decode_body() -> None:
    assert decode_body(b' {"a": [1, 2.5, null]} ') == {"a": [1, 2.5, None]}
    for data, fragment in [(b'{"a": Infinity}', "Infinity"), (b'{"a": -Infinity}', "Infinity"),
                           (b"1" * 5000, "not valid JSON")]:
        with pytest.raises(NorthboundError, match=fragment) as info:
            decode_body(data)
        assert info.value.status == 400


def test_encode_turns_non_finite_numbers_into_null() -> None:
    doc = {"a": math.inf, "b": [math.nan, 1.5], "c": ("x",)}
    assert json.loads(encode(doc)) == {"a": None, "b": [None, 1.5], "c": ["x"]}


def test_long_values_are_cut_in_messages(state: NorthboundState) -> None:
    for path, doc in [("/mesh/neighbours/h1", {"neighbours": ["x" * 5000]}),
                      ("/tiers", {"tiers": {"x" * 5000: 1}}),
                      ("/mesh/neighbours/" + "x" * 5000, {"neighbours": []})]:
        status, answer = state.put(path, body(doc))
        assert status == 404 and len(answer["error"]) < 200, answer
        assert "x" * 50 not in answer["error"] and "..." in answer["error"]


# --------------------------------------------------------------------------- fuzzing


_names = st.sampled_from(["h1", "h2", "h3", "h4", "h5", "h9", "v1", "m1", "", "h1 "])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(),
                     st.text(max_size=8), _names)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.one_of(_names, st.text(max_size=6)),
                                                 inner, max_size=6)), max_leaves=20)
_docs = st.one_of(
    _values,
    st.fixed_dictionaries({"neighbours": st.one_of(st.lists(_names, max_size=6), _values)}),
    st.fixed_dictionaries({"tiers": st.one_of(st.dictionaries(_names, _scalars, max_size=8),
                                              _values)},
                          optional={"version": _scalars}),
)
_bodies = st.one_of(st.binary(max_size=200),
                    _docs.map(lambda d: json.dumps(d).encode()),
                    _docs.map(lambda d: json.dumps(d)[:-1].encode()))
_paths = st.one_of(st.sampled_from(["/mesh/neighbours/h1", "/mesh/neighbours/h3", "/tiers",
                                    "/mesh/neighbours/v1", "/mesh/neighbours", "/topology",
                                    "/multicast/239.1.1.1", "/paths", "/health"]),
                   st.text(max_size=30).map(lambda t: "/" + t))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["PUT", "PUT", "PUT", "GET", "POST", "DELETE"]),
       path=_paths, data=_bodies)
def test_fuzz_never_raises_and_refusals_change_nothing(method: str, path: str,
                                                       data: bytes) -> None:
    st_ = NorthboundState(NetView.from_dict(topology()), max_body=150)
    st_.set_neighbours("h2", ["h3"])
    heard: list = []
    st_.add_listener(heard.append)
    before = snapshot(st_)
    status, doc = st_.handle(method, path, data)
    json.loads(encode(doc))
    if status == 200:
        return
    assert 400 <= status <= 499, (status, doc)
    assert isinstance(doc.get("error"), str) and doc["error"] and list(doc) == ["error"]
    assert len(doc["error"]) < 400 and "\n" not in doc["error"]
    assert snapshot(st_) == before and heard == []
