"""Scenario files: which topology to build, how to shape its links, how to check them.

A scenario is a YAML mapping (see ``experiments/default.yaml``)::

    name: default                 # run name; letters, digits, . _ -
    description: ...
    seed: 1                       # also the generator's seed unless params set one
    topology: {generator: tiered, params: {regions: 4}}   # or "tiered,regions=4"
    links:
      mode: auto                  # auto | netem | userspace
      defaults: {delay: 1ms, jitter: 0, loss: 0, bw: 20Mbit, queue: 100}
      overrides: [{between: [s1, s2], delay: 40ms, loss: 1%}]
    calibration: {probes: 100, interval_s: 0.01, iperf_seconds: 3, sample: null, paths: true}
    duration_s: 150               # length of the delivery run, seconds
    warmup_s: 20                  # first seconds left out of the metrics (< duration_s)
    content: {videos: 40, live_channels: 1, duration_s: 120, bitrate_kbps: 400, ...}
    delivery: {cache_mb: 8, eviction: lru, mesh_degree: 2, prefetch: next-segments, ...}
    viewers: {per_host: 6, startup_buffer_s: 4, zipf_s: 0.8, pause_prob: 0.2, ...}
    events:
      - {at_s: 60, republish: vod-0000}          # new version of a video
      - {at_s: 40, link: [s1, s3], delay: 40ms}  # change a link during the run

Every section is optional and has the defaults of :class:`ContentConfig`,
:class:`DeliveryConfig` and :class:`ViewersConfig`.

Link semantics: the generator's own link attributes stand; ``links.defaults``
fill only the fields an edge does not have; ``overrides`` replace fields on the
named link.  Units: delay and jitter in ms, or "5ms", "0.5s", "500us"; bw in
Mbit/s, or "10Mbit", "1Gbit", "500kbit" (null: unlimited); loss in percent, or
"1%"; queue in packets (null: interface default).  A ``link`` event sets the same
fields, at ``at_s`` seconds into the run, on a link the topology must have.

Parsing is pure (:func:`parse_scenario`, :func:`loads_scenario`); only
:func:`load_scenario` reads a file.  Every problem is one :class:`ScenarioError`
line naming the file, the key path and the value.

- :mod:`.units`: link quantities (:func:`parse_time_ms`, :func:`parse_rate_mbit`, ...);
- :mod:`.errors`: :class:`ScenarioError` and the checks that build its one-line messages;
- :mod:`.model`: the frozen sections of a :class:`Scenario`, the values they allow and
  :meth:`Scenario.to_dict`;
- :mod:`.links`: link semantics, and the other checks against the built topology;
- :mod:`.parse`: :func:`parse_scenario`, YAML data -> :class:`Scenario`;
- :mod:`.load`: :func:`loads_scenario` and :func:`load_scenario`, text or a file;
- :mod:`.overrides`: setting values by key path, for :meth:`Scenario.with_overrides`.
"""

import topologies as topologies  # the generator registry Scenario.build_spec calls
from testbed.scenario.errors import ScenarioError
from testbed.scenario.links import apply_link_config, check_flash_crowd_regions, check_link_events
from testbed.scenario.load import load_scenario, loads_scenario
from testbed.scenario.model import (
    EVENT_ACTIONS,
    EVICTION_POLICIES,
    HTTP_PORT_RESERVED,
    LINK_KEYS,
    LINK_MODES,
    POLICIES,
    PREFETCH_POLICIES,
    PUSH_PRIORITIES,
    PUSH_SOURCES,
    TCP_CONGESTION,
    VIEWER_MODELS,
    CalibrationConfig,
    ContentConfig,
    ControllerConfig,
    DeliveryConfig,
    EngineSection,
    EventConfig,
    FlashCrowdConfig,
    LinkConfig,
    LinkOverride,
    Scenario,
    TopologyConfig,
    ViewersConfig,
)
from testbed.scenario.parse import (
    CALIBRATION_KEYS,
    CONTENT_KEYS,
    DELIVERY_KEYS,
    ENGINE_KEYS,
    EVENT_KEYS,
    FLASH_CROWD_KEYS,
    LINKS_KEYS,
    TOP_KEYS,
    TOPOLOGY_KEYS,
    VIEWERS_KEYS,
    parse_scenario,
)
from testbed.scenario.parse import _catalogue_ids as _catalogue_ids  # used by the tests
from testbed.scenario.units import parse_loss_pct, parse_queue_pkts, parse_rate_mbit, parse_time_ms

__all__ = [
    "CALIBRATION_KEYS", "CONTENT_KEYS", "DELIVERY_KEYS", "ENGINE_KEYS", "EVENT_ACTIONS",
    "EVENT_KEYS", "EVICTION_POLICIES", "FLASH_CROWD_KEYS", "HTTP_PORT_RESERVED", "LINKS_KEYS",
    "LINK_KEYS", "LINK_MODES", "POLICIES", "PREFETCH_POLICIES", "PUSH_PRIORITIES",
    "PUSH_SOURCES", "TCP_CONGESTION", "TOPOLOGY_KEYS", "TOP_KEYS", "VIEWERS_KEYS", "VIEWER_MODELS",
    "CalibrationConfig", "ContentConfig", "ControllerConfig", "DeliveryConfig",
    "EngineSection", "EventConfig",
    "FlashCrowdConfig", "LinkConfig", "LinkOverride", "Scenario", "ScenarioError",
    "TopologyConfig", "ViewersConfig", "apply_link_config", "check_flash_crowd_regions",
    "check_link_events", "load_scenario", "loads_scenario", "parse_loss_pct",
    "parse_queue_pkts", "parse_rate_mbit", "parse_scenario", "parse_time_ms",
]
