"""The run's workload: flash crowds given in run seconds reach the workload in its own time."""

from __future__ import annotations

import dataclasses
import textwrap

from testbed.core import workload as W
from testbed.core.spec import HELPER, hosts
from testbed.harness.run import VIEWERS_START_S, workload_config
from testbed.scenario import loads_scenario

SCENARIO = """
topology:
  generator: tiered
  params: {regions: 2, helpers_per_region: 1, viewers_per_region: 1, spread_pct: 0,
           tier_delays_ms: [3, 25]}
duration_s: 120
viewers:
  model: workload
  flash_crowds:
    - {at_s: 40, duration_s: 30, rate: 0.5, video: vod-0039, regions: [h2]}
    - {at_s: 2, duration_s: 30, rate: 0.5, video: live-00, ramp_s: 10}
    - {at_s: 0, duration_s: 6, rate: 0.5, video: vod-0001}
"""


def config() -> W.WorkloadConfig:
    s = loads_scenario(textwrap.dedent(SCENARIO), "x.yaml")
    return workload_config(s, hosts(s.build_spec(), [HELPER]))


def test_flash_crowds_move_to_workload_time() -> None:
    assert VIEWERS_START_S == 6.0
    assert config().flash_crowds == (
        W.FlashCrowd(34.0, 30.0, 0.5, "vod-0039", ("h2",), 0.0),
        W.FlashCrowd(0.0, 26.0, 0.5, "live-00", None, 6.0),  # started before the viewers
    )                                                         # the last one ended before them


def test_crowd_sessions_arrive_in_their_run_time_windows() -> None:
    cfg = config()
    plain = {s.id for s in W.generate(dataclasses.replace(cfg, flash_crowds=())).sessions}
    extra = [s for s in W.generate(cfg).sessions if s.id not in plain]
    viral = [s for s in extra if s.video == "vod-0039"]
    live = [s for s in extra if s.video == "live-00"]
    assert viral and live and len(viral) + len(live) == len(extra)
    assert all(40.0 <= s.arrive_at + VIEWERS_START_S < 70.0 and s.helper == "h2" for s in viral)
    assert all(6.0 <= s.arrive_at + VIEWERS_START_S < 32.0 and s.live for s in live)
