"""Scenario files: good files parse, bad input gives one line naming file, key and value."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from testbed.core.floor import NOMINAL_USERSPACE_MS, links_below_floor
from testbed.core.spec import HELPER, MASTER, VIEWER, hosts, link_params
from testbed.scenario import (
    ContentConfig,
    DeliveryConfig,
    EngineSection,
    EventConfig,
    FlashCrowdConfig,
    Scenario,
    ScenarioError,
    ViewersConfig,
    load_scenario,
    loads_scenario,
    parse_loss_pct,
    parse_queue_pkts,
    parse_rate_mbit,
    parse_scenario,
    parse_time_ms,
)

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SCENARIO_FILES = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if "sweeps" not in p.parts)
SWEEP_FILES = sorted((EXPERIMENTS / "sweeps").glob("*.yaml"))
SRC = "experiments/x.yaml"

MINIMAL = """
topology:
  generator: tiered
  params: {regions: 2, helpers_per_region: 1, viewers_per_region: 1, spread_pct: 0,
           tier_delays_ms: [3, 25]}
"""


def scenario(extra: str = "", base: str = MINIMAL) -> Scenario:
    return loads_scenario(textwrap.dedent(base) + textwrap.dedent(extra), SRC)


def error_of(text: str, build: bool = False) -> str:
    with pytest.raises(ScenarioError) as err:
        s = loads_scenario(textwrap.dedent(text), SRC)
        if build:
            s.build_spec()
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{SRC}: "), msg
    return msg


# ------------------------------------------------------------ shipped files


def test_experiments_folder_has_the_expected_files() -> None:
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in SCENARIO_FILES}
    assert {"default.yaml", "fidelity-1mbit.yaml", "fidelity-10mbit.yaml",
            "fidelity-50mbit.yaml", "examples/geometric.yaml", "examples/isp.yaml"} <= names


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_every_shipped_scenario_parses_and_builds(path: Path) -> None:
    s = load_scenario(path)
    g = s.build_spec()
    assert s.source == str(path)
    assert g.graph["scenario"] == s.name
    assert sum(1 for _, r in g.nodes(data="role") if r == MASTER) == 1
    if "scale" not in path.parts:  # the emulated ones stay within what its links carry
        assert all(bw is None or bw <= 50 for _, _, bw in g.edges(data="bw_mbit"))
    assert parse_scenario(s.to_dict(), s.source) == s  # to_dict round-trips


def test_default_scenario_matches_the_reference_setup() -> None:
    s = load_scenario(EXPERIMENTS / "default.yaml")
    assert (s.name, s.seed, s.links.mode, s.topology.generator) == ("default", 1, "auto", "tiered")
    assert s.links.tcp_congestion == "cubic"
    g = s.build_spec()
    assert len(hosts(g, [MASTER])) == 1
    assert len(hosts(g, [HELPER])) == 8
    assert len(hosts(g, [VIEWER])) == 4
    assert {g.nodes[h]["tier"] for h in hosts(g, [HELPER])} == {1, 2}
    for u, v in g.edges:
        p = link_params(g, u, v)
        assert p.bw_mbit is not None and p.bw_mbit <= 50
    for h in hosts(g):
        (sw,) = g.neighbors(h)
        assert link_params(g, h, sw).delay_ms == 1.0  # a short access hop, above the floor
    # nothing in it asks for less than userspace switches add (the load-time note)
    assert links_below_floor(g, NOMINAL_USERSPACE_MS) == []


@pytest.mark.parametrize("rate", [1, 10, 50])
def test_fidelity_scenarios_have_their_bottleneck(rate: int) -> None:
    g = load_scenario(EXPERIMENTS / f"fidelity-{rate}mbit.yaml").build_spec()
    delays = [link_params(g, a, b).delay_ms for a, b in [("h1", "s1"), ("s1", "s2"), ("s2", "h2")]]
    assert delays == [5.0, 10.0, 20.0]
    rates = [link_params(g, a, b).bw_mbit for a, b in g.edges]
    assert min(r for r in rates if r is not None) == rate


# ------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("value", "ms"),
    [(5, 5.0), (0.5, 0.5), ("5ms", 5.0), ("0.5s", 500.0), ("500us", 0.5), ("2 ms", 2.0),
     ("7", 7.0), ("1e1ms", 10.0), ("1sec", 1000.0), (0, 0.0)],
)
def test_parse_time_ms(value: object, ms: float) -> None:
    assert parse_time_ms(value) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("value", "mbit"),
    [(10, 10.0), ("10Mbit", 10.0), ("1Gbit", 1000.0), ("500kbit", 0.5), ("2 mbit/s", 2.0),
     (0.25, 0.25)],
)
def test_parse_rate_mbit(value: object, mbit: float) -> None:
    assert parse_rate_mbit(value) == pytest.approx(mbit)


@pytest.mark.parametrize(
    ("parser", "value", "fragment"),
    [
        (parse_time_ms, "-5ms", "must be >= 0"),
        (parse_time_ms, "5 parsecs", "unknown unit 'parsecs'"),
        (parse_time_ms, True, "expected a duration"),
        (parse_time_ms, "fast", "expected a duration"),
        (parse_rate_mbit, 0, "must be > 0"),
        (parse_rate_mbit, "10mbps", "tc's 'mbps' means megabytes"),
        (parse_loss_pct, "101%", "between 0 and 100"),
        (parse_loss_pct, "a lot", "expected a percentage"),
        (parse_queue_pkts, 10.5, "whole number"),
        (parse_queue_pkts, 0, "must be >= 1"),
    ],
)
def test_unit_parsers_reject(parser, value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parser(value)
    assert fragment in str(err.value)


def test_parse_loss_pct() -> None:
    assert parse_loss_pct("1%") == 1.0
    assert parse_loss_pct(" 0.5 % ") == 0.5
    assert parse_loss_pct(2) == 2.0


# ------------------------------------------------------------ error messages


def test_negative_delay_message_is_exact() -> None:
    msg = error_of(MINIMAL + "links: {defaults: {delay: '-5ms'}}\n")
    assert msg == "experiments/x.yaml: links.defaults.delay: '-5ms' (must be >= 0)"


def test_override_naming_a_missing_node() -> None:
    msg = error_of(MINIMAL + "links: {overrides: [{between: [h1, zz], delay: 5ms}]}\n", build=True)
    assert msg == "experiments/x.yaml: links.overrides[0].between: ['h1', 'zz'] (no node 'zz')"


def test_override_naming_two_unlinked_nodes() -> None:
    msg = error_of(MINIMAL + "links: {overrides: [{between: [h1, h2], delay: 5ms}]}\n", build=True)
    assert msg.endswith("links.overrides[0].between: ['h1', 'h2'] (no link between h1 and h2)")


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("topology: tiered\nparamz: 1\n", "paramz",
         "unknown key (expected one of name, description, seed, policy, topology, links, "
         "calibration, controller, duration_s, warmup_s, content, delivery, viewers, engine, "
         "events, faults)"),
        ("topology: tiered\nfaults: {cont: 3}\n", "faults.cont",
         "unknown key (expected one of count, kinds, start_s,"),
        ("topology: tiered\nfaults: {kinds: [helper_crash, disk_full]}\n", "faults.kinds[1]",
         "'disk_full'"),
        ("topology: tiered\nduration_s: 60\nfaults: {start_s: 50, quiet_s: 20}\n",
         "faults.start_s", "50 (must be < duration_s - quiet_s (60 - 20))"),
        ("topology: tiered\nfaults: {down_s: [5, 2]}\n", "faults.down_s[1]", "2"),
        ("topology: tiered\nfaults: {fuzz_rate: -1}\n", "faults.fuzz_rate", "-1 (must be >= 0)"),
        ("topology: {generator: tiered, paramz: {}}\n", "topology.paramz",
         "unknown key (expected one of generator, params)"),
        ("topology: tiered\nlinks: {mod: netem}\n", "links.mod",
         "unknown key (expected one of mode, tcp_congestion, defaults, overrides)"),
        ("topology: tiered\nlinks: {defaults: {latency: 5}}\n", "links.defaults.latency",
         "unknown key (expected one of delay, jitter, loss, bw, queue)"),
        ("topology: tiered\nlinks: {overrides: [{between: [s1, s2], dly: 5}]}\n",
         "links.overrides[0].dly", "unknown key (expected one of between, delay,"),
        ("topology: tiered\ncalibration: {probe: 3}\n", "calibration.probe",
         "unknown key (expected one of probes, interval_s,"),
        ("topology: {generator: tiered, params: {regionz: 4}}\n", "topology.params.regionz",
         "unknown key (expected one of regions, tiers,"),
    ],
)
def test_unknown_keys_at_every_level(text: str, path: str, expected: str) -> None:
    msg = error_of(text)
    assert msg.startswith(f"{SRC}: {path}: {expected}"), msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("topology: tiered\nlinks: {defaults: {bw: 0}}\n", "links.defaults.bw: 0 (must be > 0)"),
        ("topology: tiered\nlinks: {defaults: {bw: 0Mbit}}\n",
         "links.defaults.bw: '0Mbit' (must be > 0)"),
        ("topology: tiered\nlinks: {overrides: [{between: [s1, s2], jitter: -1}]}\n",
         "links.overrides[0].jitter: -1 (must be >= 0)"),
        ("topology: tiered\nlinks: {defaults: {loss: 150%}}\n",
         "links.defaults.loss: '150%' (must be between 0 and 100)"),
        ("topology: tiered\nlinks: {defaults: {queue: many}}\n",
         "links.defaults.queue: 'many' (expected a whole number of packets)"),
        ("topology: tiered\nlinks: {mode: fast}\n",
         "links.mode: 'fast' (must be one of auto, netem, userspace)"),
        ("topology: tiered\nlinks: {tcp_congestion: vegas}\n",
         "links.tcp_congestion: 'vegas' (must be one of cubic, reno, bbr)"),
        ("topology: tiered\nseed: one\n", "seed: 'one' (must be a whole number)"),
        ("topology: tiered\nseed: -1\n", "seed: -1 (must be >= 0)"),
        ("topology: tiered\nname: [a]\n", "name: ['a'] (must be text)"),
        ("topology: tiered\nname: a/b\n", "name: 'a/b' (use letters, digits"),
        ("topology: tiered\ncalibration: {probes: 1.5}\n",
         "calibration.probes: 1.5 (must be a whole number)"),
        ("topology: tiered\ncalibration: {interval_s: 0}\n",
         "calibration.interval_s: 0 (must be > 0)"),
        ("topology: tiered\ncalibration: {paths: maybe}\n",
         "calibration.paths: 'maybe' (must be true or false)"),
        ("topology: tiered\ncalibration: {sample: 0}\n", "calibration.sample: 0 (must be >= 1)"),
        ("topology: tiered\nlinks: {overrides: [{between: [s1], delay: 1}]}\n",
         "links.overrides[0].between: ['s1'] (must be two different node names)"),
        ("topology: tiered\nlinks: {overrides: [{between: [s1, s2]}]}\n",
         "links.overrides[0]: {'between': ['s1', 's2']} (sets no link field"),
        ("topology: tiered\nlinks: {overrides: {between: [s1, s2]}}\n",
         "links.overrides: {'between': ['s1', 's2']} (must be a list"),
        ("topology: tiered\nlinks: [auto]\n", "links: ['auto'] (must be a mapping with keys"),
        ("topology: {generator: tree}\n",
         "topology.generator: 'tree' (unknown generator, expected one of chain, geometric, isp,"),
        ("topology: 'tree,depth=2'\n", "topology.generator: 'tree' (unknown generator"),
        ("topology: {params: {regions: 2}}\n", "topology: {'params': {'regions': 2}} "
         "(missing key 'generator')"),
        ("topology: {generator: tiered, params: {regions: four}}\n",
         "topology.params.regions: 'four' (expected an integer)"),
        ("topology: {generator: tiered, params: [regions]}\n",
         "topology.params: ['regions'] (must be a mapping of parameter: value)"),
        ("topology: 'tiered,regions=4,4'\n",
         "topology: 'tiered,regions=4,4' ('4' is not key=value (write lists with ':'"),
        ("topology: 'tiered,helpers_per_region=x'\n",
         "topology.params.helpers_per_region: 'x' (expected an integer)"),
        ("name: x\n", "topology: missing"),
        ("- 1\n- 2\n", "[1, 2] (expected a mapping with a 'topology' key)"),
        ("", "empty scenario"),
    ],
)
def test_bad_values_name_file_key_and_value(text: str, expected: str) -> None:
    assert error_of(text).startswith(f"{SRC}: {expected}")


def test_generator_range_errors_surface_at_build() -> None:
    s = scenario(base="topology: {generator: tiered, params: {regions: 0}}\n")
    with pytest.raises(ScenarioError) as err:
        s.build_spec()
    assert str(err.value) == "experiments/x.yaml: topology.params.regions: 0 (must be >= 1)"


def test_yaml_syntax_error_names_the_line() -> None:
    msg = error_of("topology: tiered\nlinks:\n  mode: auto\n   defaults: x\n")
    assert msg.startswith(f"{SRC}: line 4, column ")
    assert "YAML error" in msg


def test_duplicate_key_is_an_error() -> None:
    msg = error_of("topology: tiered\nseed: 1\nseed: 2\n")
    assert msg == f"{SRC}: line 3, column 1: YAML error: duplicate key 'seed'"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as err:
        load_scenario(missing)
    assert str(err.value) == f"{missing}: cannot read (No such file or directory)"


def test_load_scenario_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("topology: tiered\nlinks: {defaults: {delay: -5}}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: links.defaults.delay: -5 (must be >= 0)"
    assert isinstance(err.value, ValueError)


# ------------------------------------------------------------ semantics


def test_defaults_fill_only_missing_fields_and_generator_values_stand() -> None:
    s = scenario("links: {defaults: {delay: 99ms, jitter: 2ms, bw: 5Mbit, queue: 30}}\n")
    g = s.build_spec()
    core = link_params(g, "s1", "s2")
    assert core.delay_ms == 3.0  # the generator's delay stands
    assert core.bw_mbit == 50.0  # and its bandwidth
    assert core.jitter_ms == 2.0  # the default fills what it left unset
    assert core.queue_pkts == 30
    raw = s.replace(links=dataclasses.replace(s.links, defaults={})).build_spec()
    assert "jitter_ms" not in raw.edges["s1", "s2"]


def test_overrides_replace_fields_on_the_named_link_only() -> None:
    s = scenario("""\
        links:
          defaults: {loss: 0.1}
          overrides:
            - {between: [s3, s1], delay: 40ms, loss: 2%, bw: null}
            - {between: [h1, s2], bw: 500kbit, queue: 7}
        """)
    g = s.build_spec()
    far, near = link_params(g, "s1", "s3"), link_params(g, "s1", "s2")
    assert (far.delay_ms, far.loss_pct, far.bw_mbit) == (40.0, 2.0, None)
    assert (near.delay_ms, near.loss_pct, near.bw_mbit) == (3.0, 0.1, 50.0)
    access = link_params(g, "h1", "s2")
    assert (access.bw_mbit, access.queue_pkts, access.delay_ms) == (0.5, 7, 1.0)


def test_scenario_seed_reaches_the_generator_unless_params_set_one() -> None:
    base = "topology: {generator: geometric, params: {switches: 8}}\n"
    one, two = scenario("seed: 1\n", base), scenario("seed: 2\n", base)
    assert one.topology_params()["seed"] == 1
    assert sorted(one.build_spec().edges) != sorted(two.build_spec().edges)
    pinned = scenario("seed: 2\n", "topology: {generator: geometric, params: {seed: 1}}\n")
    assert pinned.topology_params()["seed"] == 1
    assert "seed" not in scenario(base="topology: isp\n").topology_params()


def test_topology_spec_string_form() -> None:
    s = scenario(base="topology: 'chain,delays_ms=5:10,bw_mbit=2'\n")
    assert s.topology.generator == "chain"
    assert dict(s.topology.params) == {"delays_ms": (5.0, 10.0), "bw_mbit": 2.0}
    assert s.name == "x"  # from the file name when not given


def test_calibration_defaults_and_values() -> None:
    assert scenario().calibration.probes == 100
    c = scenario("calibration: {probes: 5, interval_s: 0.1, iperf_seconds: 0, sample: 3, "
                 "paths: false}\n").calibration
    assert (c.probes, c.interval_s, c.iperf_seconds, c.sample, c.paths) == (5, 0.1, 0.0, 3, False)


def test_the_openflow_channel_is_plain_unless_tls_is_asked_for() -> None:
    assert scenario().controller.tls is False
    s = scenario("controller: {tls: true}\n")
    assert s.controller.tls and s.to_dict()["controller"] == {"tls": True}
    with pytest.raises(ScenarioError, match=r"controller.tls: 'yes' \(must be true or false\)"):
        scenario("controller: {tls: 'yes'}\n")
    with pytest.raises(ScenarioError, match="controller.tsl: unknown key"):
        scenario("controller: {tsl: true}\n")


def test_scenario_is_frozen() -> None:
    s = scenario()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.topology.params["regions"] = 9  # type: ignore[index]


def test_with_overrides_rechecks_and_labels_the_source() -> None:
    s = scenario()
    bigger = s.with_overrides({"topology.params.regions": 4, "links.defaults.loss": "1%",
                               "seed": 5})
    assert bigger.topology.params["regions"] == 4 and bigger.seed == 5
    assert bigger.links.defaults["loss_pct"] == 1.0
    assert len(hosts(bigger.build_spec(), [HELPER])) == 4
    assert s.topology.params["regions"] == 2  # the original is untouched
    with pytest.raises(ScenarioError) as err:
        s.with_overrides({"links.defaults.bw": 0})
    assert str(err.value) == (
        "experiments/x.yaml [links.defaults.bw=0]: links.defaults.bw: 0 (must be > 0)")
    over = scenario("links: {overrides: [{between: [s1, s2], delay: 1}]}\n")
    assert over.with_overrides({"links.overrides[0].delay": "8ms"}).links.overrides[0].fields == {
        "delay_ms": 8.0}
    with pytest.raises(ScenarioError, match=r"no item \[3\]"):
        over.with_overrides({"links.overrides[3].delay": 1})


# ------------------------------------------------------------ delivery sections

FULL = """
duration_s: 90
content: {videos: 3, live_channels: 0, duration_s: 30, live_duration_s: 60, bitrate_kbps: 800,
          segment_s: 4}
delivery:
  cache_mb: 1.5
  eviction: lfu
  mesh_degree: 0
  mesh_pull: true
  prefetch: next-segments,lookahead=4
  prefetch_interval_s: 0.5
  push_budget_kbps: 800
  pingback_interval_s: 2
  pingback_probes: 5
  tiers: [10, 50]
  fanout: 3
  neighbour_interval_s: 4
viewers: {per_host: 2, startup_buffer_s: 2, max_buffer_s: 2, zipf_s: 0, pause_prob: 0,
          seek_prob: 1, abandon_prob: 0.5, live_share: 1, mean_gap_s: 0}
events:
  - {at_s: 0, republish: vod-0002}
  - {at_s: 40.5, link: [s3, s1], delay: 40ms, loss: 1%, bw: null}
"""


def test_delivery_sections_parse() -> None:
    s = scenario(FULL)
    assert s.duration_s == 90.0
    assert s.content == ContentConfig(videos=3, live_channels=0, duration_s=30.0,
                                      live_duration_s=60.0, bitrate_kbps=800, segment_s=4.0)
    d = s.delivery
    assert (d.cache_mb, d.cache_bytes, d.eviction, d.mesh_degree, d.mesh_pull) == (
        1.5, 1_500_000, "lfu", 0, True)
    assert (d.prefetch, d.prefetch_policy) == ("next-segments,lookahead=4", "next-segments")
    assert d.push_budget_bytes == 800 * 1000 // 8 // 2  # kbps x interval 0.5 s
    assert (d.pingback_interval_s, d.pingback_probes, d.fanout, d.neighbour_interval_s) == (
        2.0, 5, 3, 4.0)
    assert (d.tiers, d.tier_count, d.bands_ms) == ((10.0, 50.0), None, (10.0, 50.0))
    assert s.viewers == ViewersConfig(per_host=2, startup_buffer_s=2.0, max_buffer_s=2.0,
                                      zipf_s=0.0, pause_prob=0.0, seek_prob=1.0,
                                      abandon_prob=0.5, live_share=1.0, mean_gap_s=0.0)
    republish, link = s.events
    assert republish == EventConfig(0.0, "republish", "vod-0002")
    assert (link.at_s, link.action, link.target, link.between) == (40.5, "link", "s3-s1",
                                                                     ("s3", "s1"))
    assert link.fields == {"delay_ms": 40.0, "loss_pct": 1.0, "bw_mbit": None}
    with pytest.raises(ValueError, match="names no link"):
        _ = republish.between
    s.build_spec()  # s1-s3 exists in the tiered topology
    assert parse_scenario(s.to_dict(), SRC) == s
    assert s.to_dict()["delivery"]["tiers"] == [10.0, 50.0]  # plain data, JSON-able
    assert s.to_dict()["events"][1] == {"at_s": 40.5, "link": ["s3", "s1"], "delay": 40.0,
                                        "loss": 1.0, "bw": None}


def test_delivery_sections_default_when_absent_or_empty() -> None:
    s = scenario()
    assert (s.duration_s, s.content, s.delivery, s.viewers, s.events) == (
        150.0, ContentConfig(), DeliveryConfig(), ViewersConfig(), ())
    assert s.delivery.tier_count == 2 and s.delivery.bands_ms is None
    assert s.delivery.cache_bytes == 8_000_000
    assert s.delivery.push_budget_bytes == 250_000  # 2000 kbps for 1 s
    assert scenario("content:\ndelivery: {}\nviewers:\nevents:\n") == s
    partial = scenario("delivery: {mesh_degree: 4}\nviewers: {per_host: 1}\n")
    assert partial.delivery == DeliveryConfig(mesh_degree=4)
    assert partial.viewers == ViewersConfig(per_host=1)


def test_warmup_defaults_to_zero_round_trips_and_must_end_before_the_run() -> None:
    assert scenario().warmup_s == 0.0
    s = scenario("duration_s: 90\nwarmup_s: 15\n")
    assert s.warmup_s == 15.0 and s.to_dict()["warmup_s"] == 15.0
    assert parse_scenario(s.to_dict(), SRC) == s
    assert s.with_overrides({"warmup_s": 0}).warmup_s == 0.0
    assert load_scenario(EXPERIMENTS / "default.yaml").warmup_s == 20.0
    for text, expected in (
            ("duration_s: 90\nwarmup_s: 90\n", "warmup_s: 90 (must be < duration_s, 90)"),
            ("duration_s: 10\nwarmup_s: 20\n", "warmup_s: 20 (must be < duration_s, 10)"),
            ("warmup_s: -1\n", "warmup_s: -1 (must be >= 0)"),
            ("warmup_s: soon\n", "warmup_s: 'soon' (must be a number)")):
        assert error_of(MINIMAL + text) == f"{SRC}: {expected}"
    with pytest.raises(ScenarioError,
                       match=r"\[duration_s=10\]: warmup_s: 15.0 \(must be < duration_s, 10\)"):
        s.with_overrides({"duration_s": 10})


def test_default_scenario_delivery_settings() -> None:
    s = load_scenario(EXPERIMENTS / "default.yaml")
    assert s.duration_s == 90.0 and s.policy == "predictive"
    assert s.content == ContentConfig()
    assert s.given_delivery == DeliveryConfig(
        cache_mb=64, push_budget_kbps=6000, prefetch_params={"popularity": {"horizon_s": 60.0}})
    assert s.delivery == DeliveryConfig(cache_mb=64, push_budget_kbps=6000, mesh_pull=True,
                                        prefetch="predictive",
                                        prefetch_params={"popularity": {"horizon_s": 60.0}})
    assert s.viewers == ViewersConfig(model="workload", arrival_rate=0.08, per_host=6)
    assert len(hosts(s.build_spec(), [VIEWER])) * s.viewers.per_host == 24
    assert s.engine == EngineSection()
    assert s.events == (EventConfig(60.0, "republish", "vod-0000"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("duration_s: 0\n", "duration_s: 0 (must be > 0)"),
        ("duration_s: long\n", "duration_s: 'long' (must be a number)"),
        ("content: {videos: -1}\n", "content.videos: -1 (must be >= 0)"),
        ("content: {videos: 2.5}\n", "content.videos: 2.5 (must be a whole number)"),
        ("content: {videos: 0, live_channels: 0}\n",
         "content.videos: 0 (and live_channels is 0: need at least one)"),
        ("content: {duration_s: 0}\n", "content.duration_s: 0 (must be > 0)"),
        ("content: {live_duration_s: -5}\n", "content.live_duration_s: -5 (must be > 0)"),
        ("content: {bitrate_kbps: 0}\n", "content.bitrate_kbps: 0 (must be >= 1)"),
        ("content: {segment_s: .inf}\n", "content.segment_s: inf (must be finite)"),
        ("content: [40]\n", "content: [40] (must be a mapping with keys videos,"),
        ("delivery: {cache_mb: 0}\n", "delivery.cache_mb: 0 (must be > 0)"),
        ("delivery: {eviction: mru}\n", "delivery.eviction: 'mru' (must be one of lru, lfu, fifo)"),
        ("delivery: {mesh_degree: -1}\n", "delivery.mesh_degree: -1 (must be >= 0)"),
        ("delivery: {mesh_pull: 1}\n", "delivery.mesh_pull: 1 (must be true or false)"),
        ("delivery: {prefetch: psychic}\n",
         "delivery.prefetch: 'psychic' (unknown policy 'psychic', expected one of none, "
         "next-segments, predictive, playhead, popularity, oracle)"),
        ("delivery: {push_source: helper}\n",
         "delivery.push_source: 'helper' (must be one of nearest, master)"),
        ("delivery: {push_priority: high}\n",
         "delivery.push_priority: 'high' (must be one of low, normal)"),
        ("delivery: {push_reserve: 1}\n",
         "delivery.push_reserve: 1 (must be below 1 (a share of capacity))"),
        ("delivery: {push_reserve: -0.1}\n", "delivery.push_reserve: -0.1 (must be >= 0)"),
        ("delivery: {prefetch: 'next,lookahead=2'}\n",
         "delivery.prefetch: 'next,lookahead=2' (unknown policy 'next'"),
        ("delivery: {prefetch: false}\n", "delivery.prefetch: False (must be text)"),
        ("delivery: {prefetch_interval_s: 0}\n", "delivery.prefetch_interval_s: 0 (must be > 0)"),
        ("delivery: {push_budget_kbps: -1}\n", "delivery.push_budget_kbps: -1 (must be >= 0)"),
        ("delivery: {pingback_interval_s: 0}\n", "delivery.pingback_interval_s: 0 (must be > 0)"),
        ("delivery: {pingback_probes: 0}\n", "delivery.pingback_probes: 0 (must be >= 1)"),
        ("delivery: {tiers: 0}\n", "delivery.tiers: 0 (must be >= 1)"),
        ("delivery: {tiers: two}\n",
         "delivery.tiers: 'two' (must be a tier count or a list of band bounds in ms)"),
        ("delivery: {tiers: true}\n", "delivery.tiers: True (must be a tier count"),
        ("delivery: {tiers: []}\n", "delivery.tiers: [] (must be a tier count"),
        ("delivery: {tiers: [50, 10]}\n", "delivery.tiers: [50, 10] (band bounds must increase)"),
        ("delivery: {tiers: [10, 10]}\n", "delivery.tiers: [10, 10] (band bounds must increase)"),
        ("delivery: {tiers: [0, 10]}\n", "delivery.tiers[0]: 0 (must be > 0)"),
        ("delivery: {fanout: 0}\n", "delivery.fanout: 0 (must be >= 1)"),
        ("delivery: {neighbour_interval_s: -2}\n",
         "delivery.neighbour_interval_s: -2 (must be > 0)"),
        ("viewers: {per_host: 0}\n", "viewers.per_host: 0 (must be >= 1)"),
        ("viewers: {startup_buffer_s: 0}\n", "viewers.startup_buffer_s: 0 (must be > 0)"),
        ("viewers: {startup_buffer_s: 5, max_buffer_s: 4}\n",
         "viewers.max_buffer_s: 4 (must be >= startup_buffer_s 5)"),
        ("viewers: {zipf_s: -0.1}\n", "viewers.zipf_s: -0.1 (must be >= 0)"),
        ("viewers: {pause_prob: 1.5}\n", "viewers.pause_prob: 1.5 (must be between 0 and 1)"),
        ("viewers: {seek_prob: -0.1}\n", "viewers.seek_prob: -0.1 (must be >= 0)"),
        ("viewers: {abandon_prob: high}\n", "viewers.abandon_prob: 'high' (must be a number)"),
        ("viewers: {live_share: 2}\n", "viewers.live_share: 2 (must be between 0 and 1)"),
        ("viewers: {mean_gap_s: -1}\n", "viewers.mean_gap_s: -1 (must be >= 0)"),
        ("events: {at_s: 1}\n", "events: {'at_s': 1} (must be a list of"),
        ("events: [republish]\n", "events[0]: 'republish' (must be a mapping like"),
        ("events: [{at_s: 1}]\n",
         "events[0]: {'at_s': 1} (needs exactly one action: republish or link)"),
        ("events: [{at_s: 1, republish: vod-0000, link: [s1, s2], delay: 1}]\n",
         "events[0]: {'at_s': 1, 'republish': 'vod-0000', 'link': ['s1', 's2'], 'delay': 1} "
         "(needs exactly one action"),
        ("events: [{republish: vod-0000}]\n",
         "events[0]: {'republish': 'vod-0000'} (missing key 'at_s')"),
        ("events: [{at_s: -1, republish: vod-0000}]\n", "events[0].at_s: -1 (must be >= 0)"),
        ("events: [{at_s: soon, republish: vod-0000}]\n",
         "events[0].at_s: 'soon' (must be a number)"),
        ("events: [{at_s: 1, republish: ''}]\n",
         "events[0].republish: '' (must be a video id like vod-0000)"),
        ("events: [{at_s: 1, republish: 7}]\n", "events[0].republish: 7 (must be a video id"),
        ("events: [{at_s: 1, republish: vod-0000, delay: 5ms}]\n",
         "events[0].delay: '5ms' (only link events set link fields)"),
        ("events: [{at_s: 1, link: [s1], delay: 5}]\n",
         "events[0].link: ['s1'] (must be two different node names)"),
        ("events: [{at_s: 1, link: [s1, s1], delay: 5}]\n",
         "events[0].link: ['s1', 's1'] (must be two different node names)"),
        ("events: [{at_s: 1, link: [s-1, s2], delay: 5}]\n",
         "events[0].link: ['s-1', 's2'] (must be two different node names)"),
        ("events: [{at_s: 1, link: [s1, s2]}]\n",
         "events[0]: {'at_s': 1, 'link': ['s1', 's2']} (sets no link field (delay, jitter,"),
        ("events: [{at_s: 1, link: [s1, s2], delay: -5ms}]\n",
         "events[0].delay: '-5ms' (must be >= 0)"),
        ("events: [{at_s: 1, link: [s1, s2], loss: 200}]\n",
         "events[0].loss: 200 (must be between 0 and 100)"),
        ("events: [{at_s: 1, republish: vod-0000}, {at_s: 2, link: [s1, s2], bw: 0}]\n",
         "events[1].bw: 0 (must be > 0)"),
    ],
)
def test_bad_delivery_values_name_key_and_value(text: str, expected: str) -> None:
    assert error_of(MINIMAL + text).startswith(f"{SRC}: {expected}")


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("content: {video: 3}\n", "content.video", "videos, live_channels, duration_s,"),
        ("delivery: {cache: 3}\n", "delivery.cache", "cache_mb, eviction, mesh_degree,"),
        ("viewers: {players: 3}\n", "viewers.players", "model, per_host, startup_buffer_s,"),
        ("events: [{at_s: 1, restart: h1}]\n", "events[0].restart",
         "at_s, republish, link, delay, jitter, loss, bw, queue"),
    ],
)
def test_unknown_delivery_keys(text: str, path: str, expected: str) -> None:
    msg = error_of(MINIMAL + text)
    assert msg.startswith(f"{SRC}: {path}: unknown key (expected one of {expected}"), msg


@pytest.mark.parametrize(
    ("link", "expected"),
    [("[h1, zz]", "events[1].link: ['h1', 'zz'] (no node 'zz')"),
     ("[h1, h2]", "events[1].link: ['h1', 'h2'] (no link between h1 and h2)")],
)
def test_link_events_must_name_an_existing_link(link: str, expected: str) -> None:
    text = MINIMAL + f"events: [{{at_s: 1, link: [s1, s2], delay: 2}}, {{at_s: 5, link: {link}, " \
        "delay: 5ms}]\n"
    s = loads_scenario(textwrap.dedent(text), SRC)  # parses: the topology is not built yet
    with pytest.raises(ScenarioError) as err:
        s.build_spec()
    assert str(err.value) == f"{SRC}: {expected}"


def test_link_events_leave_the_built_topology_alone() -> None:
    plain = scenario().build_spec()
    with_event = scenario("events: [{at_s: 5, link: [s1, s2], delay: 40ms, bw: 1}]\n")
    g = with_event.build_spec()
    assert link_params(g, "s1", "s2") == link_params(plain, "s1", "s2")


def test_dotted_overrides_reach_the_delivery_sections() -> None:
    s = scenario("events: [{at_s: 60, republish: vod-0000}, {at_s: 5, link: [s1, s2], "
                 "delay: 1}]\n")
    t = s.with_overrides({"delivery.mesh_degree": 3, "delivery.tiers": [5, 20],
                          "delivery.eviction": "fifo", "content.videos": 7,
                          "viewers.pause_prob": 0.5, "duration_s": 30,
                          "events[0].at_s": 10, "events[1].delay": "9ms"})
    assert (t.delivery.mesh_degree, t.delivery.bands_ms, t.delivery.eviction) == (
        3, (5.0, 20.0), "fifo")
    assert (t.content.videos, t.viewers.pause_prob, t.duration_s) == (7, 0.5, 30.0)
    assert t.events[0] == EventConfig(10.0, "republish", "vod-0000")
    assert t.events[1].fields == {"delay_ms": 9.0}
    assert s.delivery.mesh_degree == 2 and s.events[0].at_s == 60.0  # original untouched
    # sections absent from the file can still be overridden
    assert scenario().with_overrides({"viewers.per_host": 9}).viewers.per_host == 9
    assert scenario().with_overrides({"events": [{"at_s": 1, "republish": "live-00"}]}).events == (
        EventConfig(1.0, "republish", "live-00"),)
    with pytest.raises(ScenarioError) as err:
        s.with_overrides({"delivery.eviction": "mru"})
    assert str(err.value) == ("experiments/x.yaml [delivery.eviction='mru']: delivery.eviction: "
                              "'mru' (must be one of lru, lfu, fifo)")
    with pytest.raises(ScenarioError, match=r"delivery.mesh_degre: unknown key"):
        s.with_overrides({"delivery.mesh_degre": 3})
    with pytest.raises(ScenarioError, match=r"no item \[2\]"):
        s.with_overrides({"events[2].at_s": 1})


def test_delivery_sections_are_frozen() -> None:
    s = scenario(FULL)
    for value, attr in [(s.content, "videos"), (s.delivery, "cache_mb"),
                        (s.viewers, "per_host"), (s.events[0], "at_s")]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, attr, 1)
    with pytest.raises(TypeError):
        s.events[1].fields["delay_ms"] = 1  # type: ignore[index]


def test_content_converts_to_the_core_catalogue_config() -> None:
    from testbed.core import content  # here, so the parsing tests run without it
    s = scenario(FULL)
    cfg = s.content.catalogue_config()
    assert isinstance(cfg, content.CatalogueConfig)
    assert cfg == content.CatalogueConfig(videos=3, live_channels=0, duration_s=30.0,
                                          live_duration_s=60.0, bitrate_kbps=800, segment_s=4.0)
    assert ContentConfig().catalogue_config() == content.CatalogueConfig()
    catalogue = content.build_catalogue(cfg)
    assert catalogue.ids() == ["vod-0000", "vod-0001", "vod-0002"]
    assert s.events[0].target in catalogue


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("engine: {port: 8080}\n", "engine.port: 8080 (must be within 1024..65535 and not 8080"),
        ("engine: {horizon_s: 90}\n", "engine.horizon_s: 90.0 (must be within 1..60 s)"),
        ("engine: {retrain_s: 0}\n", "engine.retrain_s: 0 (must be > 0)"),
        ("engine: {cores: 2}\n", "engine.cores: unknown key"),
        ("viewers: {model: crowd}\n", "viewers.model: 'crowd'"),
        ("viewers: {arrival_rate: 0}\n", "viewers.arrival_rate: 0 (must be > 0)"),
        ("viewers: {regional_skew: 2}\n", "viewers.regional_skew: 2"),
    ],
)
def test_engine_and_workload_keys_are_checked(text: str, expected: str) -> None:
    msg = error_of("topology: {generator: tiered}\n" + text)
    assert msg.startswith(f"{SRC}: {expected}"), msg


def test_engine_host_must_be_a_host_of_the_topology() -> None:
    s = loads_scenario("topology: {generator: tiered}\nengine: {host: h99}\n", SRC)
    with pytest.raises(ScenarioError, match=r"engine.host: 'h99' is not a host of the topology"):
        s.build_spec()
    ok = loads_scenario("topology: {generator: tiered}\nengine: {host: h2}\n", SRC)
    assert ok.engine.host == "h2" and ok.build_spec() is not None


# ------------------------------------------------------------ flash crowds

CROWDS = """
content: {videos: 40, live_channels: 1}
viewers:
  model: workload
  flash_crowds:
    - {at_s: 40, duration_s: 30, rate: 0.15, video: vod-0039, ramp_s: 10}
    - {at_s: 70, duration_s: 40, rate: 0.10, video: live-00, regions: [h2]}
"""


def test_flash_crowds_parse_and_round_trip() -> None:
    s = scenario(CROWDS)
    assert s.viewers.flash_crowds == (
        FlashCrowdConfig(40.0, 30.0, 0.15, "vod-0039", None, 10.0),
        FlashCrowdConfig(70.0, 40.0, 0.1, "live-00", ("h2",), 0.0))
    d = s.to_dict()
    assert d["viewers"]["flash_crowds"][1] == {"at_s": 70.0, "duration_s": 40.0, "rate": 0.1,
                                               "video": "live-00", "regions": ["h2"],
                                               "ramp_s": 0.0}
    assert parse_scenario(d, SRC) == s
    assert s.build_spec() is not None
    t = s.with_overrides({"viewers.flash_crowds[0].rate": 0.3})
    assert t.viewers.flash_crowds[0].rate == 0.3 and t.viewers.flash_crowds[1] == (
        s.viewers.flash_crowds[1])
    assert scenario().viewers.flash_crowds == ()


def test_flash_crowd_videos_are_the_catalogues_ids() -> None:
    from testbed.core import content  # here, so the parsing tests run without it
    from testbed.scenario import _catalogue_ids
    for cfg in (ContentConfig(), ContentConfig(videos=3, live_channels=0),
                ContentConfig(videos=0, live_channels=12)):
        assert list(_catalogue_ids(cfg)) == content.build_catalogue(
            cfg.catalogue_config()).ids()


def crowd(entry: str, content: str = "{videos: 40, live_channels: 1}") -> str:
    return MINIMAL + f"content: {content}\nviewers: {{flash_crowds: [{entry}]}}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "viewers: {flash_crowds: {at_s: 1}}\n",
         "viewers.flash_crowds: {'at_s': 1} (must be a list of"),
        (crowd("vod-0001"), "viewers.flash_crowds[0]: 'vod-0001' (must be a mapping like"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, peak: 2}"),
         "viewers.flash_crowds[0].peak: unknown key (expected one of at_s, duration_s, rate, "
         "video, regions, ramp_s)"),
        (crowd("{at_s: 1, duration_s: 5, video: vod-0001}"),
         "viewers.flash_crowds[0]: {'at_s': 1, 'duration_s': 5, 'video': 'vod-0001'} "
         "(missing key 'rate')"),
        (crowd("{at_s: -1, duration_s: 5, rate: 1, video: vod-0001}"),
         "viewers.flash_crowds[0].at_s: -1 (must be >= 0)"),
        (crowd("{at_s: 1, duration_s: 0, rate: 1, video: vod-0001}"),
         "viewers.flash_crowds[0].duration_s: 0 (must be > 0)"),
        (crowd("{at_s: 1, duration_s: 5, rate: -1, video: vod-0001}"),
         "viewers.flash_crowds[0].rate: -1 (must be >= 0)"),
        (crowd("{at_s: 1, duration_s: 5, rate: many, video: vod-0001}"),
         "viewers.flash_crowds[0].rate: 'many' (must be a number)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, ramp_s: 6}"),
         "viewers.flash_crowds[0].ramp_s: 6 (must be <= duration_s 5)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, ramp_s: -1}"),
         "viewers.flash_crowds[0].ramp_s: -1 (must be >= 0)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0040}"),
         "viewers.flash_crowds[0].video: 'vod-0040' (not in the catalogue: "
         "vod-0000..vod-0039, live-00)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: live-00}", "{videos: 3, "
               "live_channels: 0}"),
         "viewers.flash_crowds[0].video: 'live-00' (not in the catalogue: vod-0000..vod-0002)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: 7}"),
         "viewers.flash_crowds[0].video: 7 (not in the catalogue"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, regions: h1}"),
         "viewers.flash_crowds[0].regions: 'h1' (must be a non-empty list of helper names, "
         "or null for all)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, regions: []}"),
         "viewers.flash_crowds[0].regions: [] (must be a non-empty list"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, regions: [h1, 3]}"),
         "viewers.flash_crowds[0].regions[1]: 3 (must be a helper name)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, regions: [h1, h1]}"),
         "viewers.flash_crowds[0].regions[1]: 'h1' (appears twice)"),
        (crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001}, "
               "{at_s: 1, duration_s: 5, rate: 1, video: vod-1}"),
         "viewers.flash_crowds[1].video: 'vod-1' (not in the catalogue"),
    ],
)
def test_bad_flash_crowds_name_file_key_and_value(text: str, expected: str) -> None:
    msg = error_of(text)
    assert msg.startswith(f"{SRC}: {expected}"), msg


def test_flash_crowd_regions_must_be_helpers_of_the_topology() -> None:
    text = crowd("{at_s: 1, duration_s: 5, rate: 1, video: vod-0001}, "
                 "{at_s: 1, duration_s: 5, rate: 1, video: vod-0001, regions: [h2, v1]}")
    s = loads_scenario(textwrap.dedent(text), SRC)  # parses: the topology is not built yet
    with pytest.raises(ScenarioError) as err:
        s.build_spec()
    assert str(err.value) == (f"{SRC}: viewers.flash_crowds[1].regions[1]: 'v1' (not a helper "
                              "of the topology: h1, h2)")
    assert scenario(CROWDS).build_spec() is not None
