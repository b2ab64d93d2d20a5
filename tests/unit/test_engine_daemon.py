"""What the engine daemon builds from its run configuration: the popularity baseline's
prefix and the live channels it must never name."""

import json
from pathlib import Path

import pytest

from testbed.harness.run import node_configs
from testbed.nodes.common import NodeConfig
from testbed.nodes.engine import Engine, engine_config
from testbed.scenario import load_scenario


@pytest.fixture(scope="module")
def scenario():
    sc = load_scenario(Path(__file__).resolve().parents[2] / "experiments" / "default.yaml")
    return sc, sc.build_spec()


def engine_node(sc, spec, run_dir: Path) -> NodeConfig:
    configs = node_configs(sc, spec, run_dir, 1000.0, b"\x01" * 32, b"\x02" * 16)
    return NodeConfig(**{**json.loads(json.dumps(configs["engine"])), "run_dir": run_dir})


def test_the_popularity_prefix_is_the_player_s_buffer_in_segments(scenario, tmp_path):
    sc, spec = scenario
    cfg = engine_config(engine_node(sc, spec, tmp_path))
    assert cfg.popularity_prefix == 6                  # 12 s of buffer, 2 s segments
    short = sc.with_overrides({"viewers.max_buffer_s": 5})
    assert engine_config(engine_node(short, spec, tmp_path)).popularity_prefix == 3


def test_the_engine_knows_the_live_channels_of_the_catalogue(scenario, tmp_path):
    sc, spec = scenario
    daemon = Engine(engine_node(sc, spec, tmp_path))
    try:
        assert daemon.engine.live == {"live-00"}
        assert "live-00" in daemon.engine.n_segments
    finally:
        daemon.events.close()
