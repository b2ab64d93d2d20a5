"""Parsing: YAML data already loaded -> a checked :class:`~testbed.scenario.model.Scenario`.

Pure: no file is read (the file name only names the source in errors, and gives the
default scenario name).  Every problem is one :class:`ScenarioError` line.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import topologies
from testbed.core.faults import FAULT_KINDS, FaultsConfig
from testbed.scenario.errors import ScenarioError, _Checker, _param_error, _show
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
from testbed.scenario.units import parse_loss_pct, parse_queue_pkts, parse_rate_mbit, parse_time_ms

TOP_KEYS = ("name", "description", "seed", "policy", "topology", "links", "calibration",
            "controller", "duration_s", "warmup_s", "content", "delivery", "viewers", "engine",
            "events", "faults")
FAULTS_KEYS = ("count", "kinds", "start_s", "quiet_s", "down_s", "cut_s", "flap_period_s",
               "fuzz_rate")
CONTROLLER_KEYS = ("tls",)
TOPOLOGY_KEYS = ("generator", "params")
LINKS_KEYS = ("mode", "tcp_congestion", "defaults", "overrides")
CALIBRATION_KEYS = ("probes", "interval_s", "iperf_seconds", "sample", "paths")
CONTENT_KEYS = ("videos", "live_channels", "duration_s", "live_duration_s", "bitrate_kbps",
                "segment_s")
DELIVERY_KEYS = ("cache_mb", "eviction", "mesh_degree", "mesh_pull", "prefetch",
                 "prefetch_interval_s", "push_budget_kbps", "pingback_interval_s",
                 "pingback_probes", "tiers", "fanout", "neighbour_interval_s", "push_source",
                 "push_priority", "push_reserve", "prefetch_params")
VIEWERS_KEYS = ("model", "per_host", "startup_buffer_s", "max_buffer_s", "zipf_s", "pause_prob",
                "seek_prob", "abandon_prob", "live_share", "mean_gap_s", "arrival_rate",
                "regional_skew", "trace", "flash_crowds")
FLASH_CROWD_KEYS = ("at_s", "duration_s", "rate", "video", "regions", "ramp_s")
ENGINE_KEYS = ("host", "port", "horizon_s", "retrain_s", "train_window_s", "min_train_s",
               "top", "prefix_segments", "arrivals_horizon_s")
EVENT_KEYS = ("at_s", *EVENT_ACTIONS, *LINK_KEYS)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LINK_PARSERS = {"delay": parse_time_ms, "jitter": parse_time_ms, "loss": parse_loss_pct,
                 "bw": parse_rate_mbit, "queue": parse_queue_pkts}
_NULLABLE = ("bw", "queue")  # null means unlimited bandwidth / the interface's default queue


def _parse_topology(c: _Checker, data: Any) -> TopologyConfig:
    if isinstance(data, str):
        try:
            name, params = topologies.parse_spec_string(data)
        except topologies.SpecStringError as exc:
            raise c.fail("topology", data, exc.detail) from None
    else:
        body = c.mapping(data, "topology", TOPOLOGY_KEYS)
        if "generator" not in body:
            raise c.fail("topology", data, "missing key 'generator'")
        name = body["generator"]
        params = body.get("params") or {}
        if not isinstance(params, Mapping):
            raise c.fail("topology.params", params, "must be a mapping of parameter: value")
    if not isinstance(name, str) or name not in topologies.GENERATORS:
        known = ", ".join(sorted(topologies.GENERATORS))
        raise c.fail("topology.generator", name, f"unknown generator, expected one of {known}")
    try:
        checked = topologies.check_params_for(name, params)
    except topologies.ParamError as exc:
        raise _param_error(c.source, "topology.params", exc) from None
    return TopologyConfig(name, MappingProxyType(checked))


def _parse_link_fields(c: _Checker, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in LINK_KEYS:
            continue
        if value is None and key in _NULLABLE:
            out[LINK_KEYS[key]] = None
            continue
        try:
            out[LINK_KEYS[key]] = _LINK_PARSERS[key](value)
        except ValueError as exc:
            raise c.fail(f"{path}.{key}", value, str(exc)) from None
    return out


def _parse_links(c: _Checker, data: Any) -> LinkConfig:
    body = c.mapping(data, "links", LINKS_KEYS)
    mode = body.get("mode", "auto")
    if mode not in LINK_MODES:
        raise c.fail("links.mode", mode, f"must be one of {', '.join(LINK_MODES)}")
    congestion = body.get("tcp_congestion", "cubic")
    if congestion not in TCP_CONGESTION:
        raise c.fail("links.tcp_congestion", congestion,
                     f"must be one of {', '.join(TCP_CONGESTION)}")
    defaults = _parse_link_fields(
        c, c.mapping(body.get("defaults"), "links.defaults", tuple(LINK_KEYS)), "links.defaults"
    )
    raw_overrides = body.get("overrides") or []
    if not isinstance(raw_overrides, list):
        raise c.fail("links.overrides", raw_overrides, "must be a list of {between: [a, b], ...}")
    overrides = []
    for i, item in enumerate(raw_overrides):
        path = f"links.overrides[{i}]"
        entry = c.mapping(item, path, ("between", *LINK_KEYS))
        between = entry.get("between")
        if (not isinstance(between, list) or len(between) != 2
                or not all(isinstance(n, str) for n in between) or between[0] == between[1]):
            raise c.fail(f"{path}.between", between, "must be two different node names")
        fields = _parse_link_fields(c, entry, path)
        if not fields:
            raise c.fail(path, item, f"sets no link field ({', '.join(LINK_KEYS)})")
        overrides.append(LinkOverride((between[0], between[1]), MappingProxyType(fields)))
    return LinkConfig(mode, congestion, MappingProxyType(defaults), tuple(overrides))


def _parse_calibration(c: _Checker, data: Any) -> CalibrationConfig:
    body = c.mapping(data, "calibration", CALIBRATION_KEYS)
    d = CalibrationConfig()
    sample = body.get("sample", d.sample)
    paths = body.get("paths", d.paths)
    if not isinstance(paths, bool):
        raise c.fail("calibration.paths", paths, "must be true or false")
    return CalibrationConfig(
        probes=c.integer(body.get("probes", d.probes), "calibration.probes", 1),
        interval_s=c.number(body.get("interval_s", d.interval_s), "calibration.interval_s", 0,
                            strict=True),
        iperf_seconds=c.number(body.get("iperf_seconds", d.iperf_seconds),
                               "calibration.iperf_seconds", 0),
        sample=None if sample is None else c.integer(sample, "calibration.sample", 1),
        paths=paths,
    )


def _parse_controller(c: _Checker, data: Any) -> ControllerConfig:
    body = c.mapping(data, "controller", CONTROLLER_KEYS)
    tls = body.get("tls", ControllerConfig.tls)
    if not isinstance(tls, bool):
        raise c.fail("controller.tls", tls, "must be true or false")
    return ControllerConfig(tls=tls)


def _parse_content(c: _Checker, data: Any) -> ContentConfig:
    body = c.mapping(data, "content", CONTENT_KEYS)
    d = ContentConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    videos = c.integer(get("videos"), "content.videos", 0)
    live = c.integer(get("live_channels"), "content.live_channels", 0)
    if videos + live == 0:
        raise c.fail("content.videos", videos, "and live_channels is 0: need at least one")
    return ContentConfig(
        videos=videos,
        live_channels=live,
        duration_s=c.number(get("duration_s"), "content.duration_s", 0, strict=True),
        live_duration_s=c.number(get("live_duration_s"), "content.live_duration_s", 0,
                                 strict=True),
        bitrate_kbps=c.integer(get("bitrate_kbps"), "content.bitrate_kbps", 1),
        segment_s=c.number(get("segment_s"), "content.segment_s", 0, strict=True),
    )


def _parse_tiers(c: _Checker, value: Any) -> int | tuple[float, ...]:
    path = "delivery.tiers"
    if isinstance(value, list):
        if not value:
            raise c.fail(path, value, "must be a tier count or a list of band bounds in ms")
        bands = tuple(c.number(v, f"{path}[{i}]", 0, strict=True) for i, v in enumerate(value))
        if any(b <= a for a, b in zip(bands, bands[1:])):
            raise c.fail(path, value, "band bounds must increase")
        return bands
    if isinstance(value, bool) or not isinstance(value, int):
        raise c.fail(path, value, "must be a tier count or a list of band bounds in ms")
    return c.integer(value, path, 1)


def _parse_delivery(c: _Checker, data: Any) -> DeliveryConfig:
    body = c.mapping(data, "delivery", DELIVERY_KEYS)
    d = DeliveryConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    def positive(key: str) -> float:
        return c.number(get(key), f"delivery.{key}", 0, strict=True)

    prefetch = c.text(get("prefetch"), "delivery.prefetch")
    policy = prefetch.split(",", 1)[0].strip()
    if policy not in PREFETCH_POLICIES:
        raise c.fail("delivery.prefetch", prefetch,
                     f"unknown policy {policy!r}, expected one of {', '.join(PREFETCH_POLICIES)}")
    fanout = get("fanout")
    return DeliveryConfig(
        cache_mb=positive("cache_mb"),
        eviction=c.choice(get("eviction"), "delivery.eviction", EVICTION_POLICIES),
        mesh_degree=c.integer(get("mesh_degree"), "delivery.mesh_degree", 0),
        mesh_pull=c.flag(get("mesh_pull"), "delivery.mesh_pull"),
        prefetch=prefetch,
        prefetch_params=_parse_prefetch_params(c, get("prefetch_params")),
        prefetch_interval_s=positive("prefetch_interval_s"),
        push_budget_kbps=c.number(get("push_budget_kbps"), "delivery.push_budget_kbps", 0),
        pingback_interval_s=positive("pingback_interval_s"),
        pingback_probes=c.integer(get("pingback_probes"), "delivery.pingback_probes", 1),
        tiers=_parse_tiers(c, get("tiers")),
        fanout=None if fanout is None else c.integer(fanout, "delivery.fanout", 1),
        neighbour_interval_s=positive("neighbour_interval_s"),
        push_source=c.choice(get("push_source"), "delivery.push_source", PUSH_SOURCES),
        push_priority=c.choice(get("push_priority"), "delivery.push_priority",
                               PUSH_PRIORITIES),
        push_reserve=_parse_reserve(c, get("push_reserve")),
    )


def _parse_prefetch_params(c: _Checker, value: Any) -> Mapping[str, Mapping[str, float]]:
    path = "delivery.prefetch_params"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise c.fail(path, value, "must map a prefetch policy name to its parameters")
    out = {}
    for name, params in value.items():
        where = f"{path}.{name}"
        if name not in PREFETCH_POLICIES:
            raise c.fail(where, name, f"unknown policy, expected one of "
                                      f"{', '.join(PREFETCH_POLICIES)}")
        if not isinstance(params, Mapping):
            raise c.fail(where, params, "must map parameter names to numbers")
        got = {str(k): c.number(v, f"{where}.{k}", 0) for k, v in params.items()}
        from testbed.core.prefetch import PrefetchError, make_policy  # lazily, as above

        try:
            make_policy(_with_params(name, got))
        except PrefetchError as exc:
            raise c.fail(where, dict(params), str(exc)) from None
        out[name] = got
    return out


def _with_params(name: str, params: Mapping[str, float]) -> str:
    """``"popularity"`` and ``{horizon_s: 30}`` -> ``"popularity,horizon_s=30"``."""
    return ",".join([name, *(f"{k}={v:g}" for k, v in params.items())])


def _parse_reserve(c: _Checker, value: Any) -> float | None:
    if value is None:
        return None
    reserve = c.number(value, "delivery.push_reserve", 0)
    if reserve >= 1:
        raise c.fail("delivery.push_reserve", value, "must be below 1 (a share of capacity)")
    return reserve


def _parse_viewers(c: _Checker, data: Any, content: ContentConfig) -> ViewersConfig:
    body = c.mapping(data, "viewers", VIEWERS_KEYS)
    d = ViewersConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    startup = c.number(get("startup_buffer_s"), "viewers.startup_buffer_s", 0, strict=True)
    max_buffer = c.number(get("max_buffer_s"), "viewers.max_buffer_s", 0, strict=True)
    if max_buffer < startup:
        raise c.fail("viewers.max_buffer_s", get("max_buffer_s"),
                     f"must be >= startup_buffer_s {startup:g}")
    trace = get("trace")
    return ViewersConfig(
        model=c.choice(get("model"), "viewers.model", VIEWER_MODELS),
        per_host=c.integer(get("per_host"), "viewers.per_host", 1),
        startup_buffer_s=startup,
        max_buffer_s=max_buffer,
        zipf_s=c.number(get("zipf_s"), "viewers.zipf_s", 0),
        pause_prob=c.fraction(get("pause_prob"), "viewers.pause_prob"),
        seek_prob=c.fraction(get("seek_prob"), "viewers.seek_prob"),
        abandon_prob=c.fraction(get("abandon_prob"), "viewers.abandon_prob"),
        live_share=c.fraction(get("live_share"), "viewers.live_share"),
        mean_gap_s=c.number(get("mean_gap_s"), "viewers.mean_gap_s", 0),
        arrival_rate=c.number(get("arrival_rate"), "viewers.arrival_rate", 0, strict=True),
        regional_skew=c.fraction(get("regional_skew"), "viewers.regional_skew"),
        trace=None if trace is None else c.text(trace, "viewers.trace"),
        flash_crowds=_parse_flash_crowds(c, body.get("flash_crowds"), content),
    )


def _catalogue_ids(content: ContentConfig) -> tuple[str, ...]:
    """The ids ``content`` publishes, as ``testbed.core.content.build_catalogue`` names them
    (spelt out here: parsing imports no core module)."""
    return (*(f"vod-{i:04d}" for i in range(content.videos)),
            *(f"live-{i:02d}" for i in range(content.live_channels)))


def _describe_ids(ids: tuple[str, ...]) -> str:
    """``vod-0000..vod-0039, live-00``: each kind's first and last id."""
    spans = []
    for kind in ("vod-", "live-"):
        mine = [i for i in ids if i.startswith(kind)]
        if mine:
            spans.append(mine[0] if len(mine) == 1 else f"{mine[0]}..{mine[-1]}")
    return ", ".join(spans)


def _parse_crowd_regions(c: _Checker, value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, "must be a non-empty list of helper names, or null for all")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise c.fail(f"{path}[{i}]", name, "must be a helper name")
        if value.index(name) != i:
            raise c.fail(f"{path}[{i}]", name, "appears twice")
    return tuple(value)


def _parse_flash_crowd(c: _Checker, item: Any, path: str, ids: tuple[str, ...]
                       ) -> FlashCrowdConfig:
    if not isinstance(item, Mapping):
        raise c.fail(path, item, "must be a mapping like {at_s: 40, duration_s: 30, "
                     "rate: 0.1, video: vod-0000}")
    body = c.mapping(item, path, FLASH_CROWD_KEYS)
    for key in FLASH_CROWD_KEYS[:4]:
        if key not in body:
            raise c.fail(path, item, f"missing key {key!r}")
    duration = c.number(body["duration_s"], f"{path}.duration_s", 0, strict=True)
    ramp = c.number(body.get("ramp_s", 0), f"{path}.ramp_s", 0)
    if ramp > duration:
        raise c.fail(f"{path}.ramp_s", body["ramp_s"], f"must be <= duration_s {duration:g}")
    video = body["video"]
    if not isinstance(video, str) or video not in ids:
        raise c.fail(f"{path}.video", video, f"not in the catalogue: {_describe_ids(ids)}")
    return FlashCrowdConfig(
        at_s=c.number(body["at_s"], f"{path}.at_s", 0),
        duration_s=duration,
        rate=c.number(body["rate"], f"{path}.rate", 0),
        video=video,
        regions=_parse_crowd_regions(c, body.get("regions"), f"{path}.regions"),
        ramp_s=ramp,
    )


def _parse_flash_crowds(c: _Checker, data: Any, content: ContentConfig
                        ) -> tuple[FlashCrowdConfig, ...]:
    """``viewers.flash_crowds``; each video must be one ``content`` publishes."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise c.fail("viewers.flash_crowds", data, "must be a list of {at_s: ..., "
                     "duration_s: ..., rate: ..., video: ...}")
    ids = _catalogue_ids(content)
    return tuple(_parse_flash_crowd(c, item, f"viewers.flash_crowds[{i}]", ids)
                 for i, item in enumerate(data))


def _parse_engine(c: _Checker, data: Any) -> EngineSection:
    body = c.mapping(data, "engine", ENGINE_KEYS)
    d = EngineSection()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    def positive(key: str) -> float:
        return c.number(get(key), f"engine.{key}", 0, strict=True)

    host = get("host")
    horizon = positive("horizon_s")
    if not 1 <= horizon <= 60:
        raise c.fail("engine.horizon_s", horizon, "must be within 1..60 s")
    port = c.integer(get("port"), "engine.port", 1024)
    if port > 65535 or port == HTTP_PORT_RESERVED:
        raise c.fail("engine.port", port, f"must be within 1024..65535 and not "
                     f"{HTTP_PORT_RESERVED} (the daemons' HTTP port)")
    return EngineSection(
        host=None if host is None else c.text(host, "engine.host"),
        port=port,
        horizon_s=horizon,
        retrain_s=positive("retrain_s"),
        train_window_s=positive("train_window_s"),
        min_train_s=positive("min_train_s"),
        top=c.integer(get("top"), "engine.top", 1),
        prefix_segments=c.integer(get("prefix_segments"), "engine.prefix_segments", 0),
        arrivals_horizon_s=positive("arrivals_horizon_s"),
    )


def _parse_event(c: _Checker, item: Any, path: str) -> EventConfig:
    if not isinstance(item, Mapping):
        raise c.fail(path, item, "must be a mapping like {at_s: 60, republish: vod-0000}")
    body = c.mapping(item, path, EVENT_KEYS)
    actions = [a for a in EVENT_ACTIONS if a in body]
    if len(actions) != 1:
        raise c.fail(path, item, f"needs exactly one action: {' or '.join(EVENT_ACTIONS)}")
    if "at_s" not in body:
        raise c.fail(path, item, "missing key 'at_s'")
    at_s = c.number(body["at_s"], f"{path}.at_s", 0)
    (action,) = actions
    if action == "republish":
        for key in LINK_KEYS:
            if key in body:
                raise c.fail(f"{path}.{key}", body[key], "only link events set link fields")
        target = body["republish"]
        if not isinstance(target, str) or not target.strip():
            raise c.fail(f"{path}.republish", target, "must be a video id like vod-0000")
        return EventConfig(at_s, action, target)
    between = body["link"]
    if (not isinstance(between, list) or len(between) != 2
            or not all(isinstance(n, str) and n and "-" not in n for n in between)
            or between[0] == between[1]):
        raise c.fail(f"{path}.link", between, "must be two different node names")
    fields = _parse_link_fields(c, body, path)
    if not fields:
        raise c.fail(path, item, f"sets no link field ({', '.join(LINK_KEYS)})")
    return EventConfig(at_s, action, f"{between[0]}-{between[1]}", MappingProxyType(fields))


def _parse_events(c: _Checker, data: Any) -> tuple[EventConfig, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise c.fail("events", data, "must be a list of {at_s: ..., republish: ...} or "
                     "{at_s: ..., link: [a, b], ...}")
    return tuple(_parse_event(c, item, f"events[{i}]") for i, item in enumerate(data))


def _parse_faults(c: _Checker, data: Any, duration_s: float) -> FaultsConfig | None:
    """``faults``: a seeded campaign during playback (absent: none)."""
    if data is None:
        return None
    body = c.mapping(data, "faults", FAULTS_KEYS)
    d = FaultsConfig()
    kinds = body.get("kinds", list(d.kinds))
    if not isinstance(kinds, list) or not kinds:
        raise c.fail("faults.kinds", kinds, f"must be a list of {', '.join(FAULT_KINDS)}")
    kinds = tuple(c.choice(k, f"faults.kinds[{i}]", FAULT_KINDS) for i, k in enumerate(kinds))

    def span(key: str) -> tuple[float, float]:
        value = body.get(key, list(getattr(d, key)))
        if not isinstance(value, list) or len(value) != 2:
            raise c.fail(f"faults.{key}", value, "must be [low, high] in seconds")
        lo = c.number(value[0], f"faults.{key}[0]", 0, strict=True)
        hi = c.number(value[1], f"faults.{key}[1]", lo)
        return lo, hi

    start = c.number(body.get("start_s", d.start_s), "faults.start_s", 0)
    quiet = c.number(body.get("quiet_s", d.quiet_s), "faults.quiet_s", 0)
    if start >= duration_s - quiet:
        raise c.fail("faults.start_s", body.get("start_s", start),
                     f"must be < duration_s - quiet_s ({duration_s:g} - {quiet:g})")
    return FaultsConfig(
        count=c.integer(body.get("count", d.count), "faults.count", 0), kinds=kinds,
        start_s=start, quiet_s=quiet, down_s=span("down_s"), cut_s=span("cut_s"),
        flap_period_s=c.number(body.get("flap_period_s", d.flap_period_s),
                               "faults.flap_period_s", 0, strict=True),
        fuzz_rate=c.number(body.get("fuzz_rate", d.fuzz_rate), "faults.fuzz_rate", 0))


def _parse_warmup(c: _Checker, value: Any, duration_s: float) -> float:
    """``warmup_s``: seconds >= 0 at the start that metrics leave out; < ``duration_s``."""
    warmup = c.number(value, "warmup_s", 0)
    if warmup >= duration_s:
        raise c.fail("warmup_s", value, f"must be < duration_s, {duration_s:g}")
    return warmup


def parse_scenario(data: Any, source: str) -> Scenario:
    """A :class:`Scenario` from YAML data already loaded; ``source`` names it in errors."""
    c = _Checker(source)
    if data is None:
        raise ScenarioError(f"{source}: empty scenario (expected a mapping with a 'topology' key)")
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: {_show(data)} (expected a mapping with a 'topology' key)")
    body = c.mapping(data, "", TOP_KEYS)
    if "topology" not in body:
        raise ScenarioError(f"{source}: topology: missing (every scenario names a generator)")
    stem = Path(source.split(" [")[0]).stem
    name = c.text(body.get("name", stem if _NAME_RE.match(stem) else "scenario"), "name")
    if not _NAME_RE.match(name):
        raise c.fail("name", name, "use letters, digits, '.', '_' or '-', at most 64")
    return Scenario(
        name=name,
        topology=_parse_topology(c, body["topology"]),
        description=c.text(body.get("description") or "", "description"),
        seed=c.integer(body.get("seed", 1), "seed", 0),
        links=_parse_links(c, body.get("links")),
        calibration=_parse_calibration(c, body.get("calibration")),
        controller=_parse_controller(c, body.get("controller")),
        duration_s=(duration := c.number(body.get("duration_s", Scenario.duration_s),
                                         "duration_s", 0, strict=True)),
        warmup_s=_parse_warmup(c, body.get("warmup_s", 0), duration),
        content=(content := _parse_content(c, body.get("content"))),
        **_policy_and_delivery(c, body),
        viewers=_parse_viewers(c, body.get("viewers"), content),
        engine=_parse_engine(c, body.get("engine")),
        events=_parse_events(c, body.get("events")),
        faults=_parse_faults(c, body.get("faults"), duration),
        source=source,
    )


def _policy_and_delivery(c: _Checker, body: Mapping[str, Any]) -> dict[str, Any]:
    """``delivery`` with the ``policy`` preset applied, and what the file gave."""
    given = _parse_delivery(c, body.get("delivery"))
    policy = body.get("policy")
    if policy is None:
        return {"delivery": given, "policy": None, "given_delivery": None}
    policy = c.choice(policy, "policy", tuple(POLICIES))
    preset = POLICIES[policy]
    if "mesh_degree" not in preset and given.mesh_degree == 0:
        raise c.fail("policy", policy, "needs a mesh, but delivery.mesh_degree is 0")
    applied = dataclasses.replace(given, **preset)
    params = given.prefetch_params.get(applied.prefetch)
    if params:
        applied = dataclasses.replace(applied, prefetch=_with_params(applied.prefetch, params))
    return {"delivery": applied, "policy": policy, "given_delivery": given}
