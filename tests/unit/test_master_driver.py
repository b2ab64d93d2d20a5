"""The master daemon as a driver of its pingback logic: signed probes out (with their
``sent`` field), signed replies in, the ``tiers`` record, the controller sync file and the
signed ``routing`` messages, on the daemons' event loop with a fake UDP socket and HTTP."""

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import uvloop

from testbed.core import security as sec
from testbed.harness.run import node_configs
from testbed.nodes import common as C
from testbed.nodes.common import NodeConfig
from testbed.nodes.master import Master
from testbed.scenario import load_scenario


class FakeUdp:
    def __init__(self):
        self.sent: list[tuple[bytes, tuple]] = []
        self.arrival = 0.0

    def send(self, data: bytes, addr: tuple) -> None:
        self.sent.append((data, addr))


@pytest.fixture(scope="module")
def scenario():
    sc = load_scenario(Path(__file__).resolve().parents[2] / "experiments" / "default.yaml")
    return sc, sc.build_spec()


def master(scenario, run_dir: Path) -> Master:
    sc, spec = scenario
    configs = node_configs(sc, spec, run_dir, 1000.0, b"\x01" * 32, b"\x02" * 16)
    cfg = NodeConfig(**{**json.loads(json.dumps(configs["m1"])), "run_dir": run_dir})
    cfg.secrets_dir.mkdir(parents=True, exist_ok=True)
    (cfg.secrets_dir / "ca.secret").write_bytes(os.urandom(32))
    m = Master(cfg)
    m.issue_credentials()
    m.secure = C.Secure(m.identity, m.authority.public_key, m.clock, m.events, m.directory)
    m.udp = FakeUdp()
    return m


def helper_secure(m: Master, name: str) -> C.Secure:
    ident = sec.Identity.from_json(m.cfg.credential_path(name).read_text())
    return C.Secure(ident, m.authority.public_key, m.clock, m.events, m.directory)


def test_a_round_through_the_driver(scenario, tmp_path):
    m = master(scenario, tmp_path)
    helpers = {h: helper_secure(m, h) for h in m.cfg.helpers}
    by_ip = {ip: h for h, ip in m.cfg.helpers.items()}
    near = sorted(m.cfg.helpers)[:4]
    floor = {h: m.logic.rtt_floor_ms(h) for h in helpers}  # what the plan's links allow
    assert all(f > 0 for f in floor.values())
    posted: list[tuple[str, str, bytes, str, int]] = []

    async def fake_send(helper, path, data, cls, port=C.HTTP_PORT):
        posted.append((helper, path, data, cls, port))
        return 200

    m.send = fake_send

    async def play():
        m.fire("pingback", None)
        assert m.timers.keys() == {"pingback", "pingback_decide"}
        await asyncio.sleep(0.35)  # every probe has left (3 passes of 8 helpers)
        assert len(m.udp.sent) == 3 * len(helpers)
        replies = []
        for data, (ip, port) in m.udp.sent:
            h = by_ip[ip]
            assert port == C.UDP_PORT
            probe = helpers[h].decode(data, "udp", roles=("master",))
            assert probe.type == "probe" and set(probe.body) == {"nonce", "sent"}
            nonce = probe.body["nonce"]
            reply = {"nonce": nonce, "sent": probe.body["sent"], "held": 0.0001}
            replies.append((h, nonce, helpers[h].encode("probe_reply", reply, to=m.cfg.name)))
        for h, nonce, reply in replies:  # 1 ms (near) or 30 ms (far) above the floor
            m.udp.arrival = (m.probe_sent[nonce] + floor[h] / 1000
                             + (0.0011 if h in near else 0.0301))
            m.on_udp(reply, (m.cfg.helpers[h], C.UDP_PORT))
        assert not m.probe_sent and not m.logic.nonces
        await asyncio.sleep(0.6)  # the decision
        for handle in m.timers.values():
            handle.cancel()

    uvloop.run(play())
    m.events.close()
    records = [json.loads(line) for line in
               (tmp_path / "logs" / "m1.jsonl").read_text().splitlines()]
    (tiers,) = [r for r in records if r["kind"] == "tiers"]
    assert tiers["version"] == 1 and tiers["tiers"][0] == near
    assert tiers["index_ms"] == pytest.approx(
        {h: floor[h] + (1.0 if h in near else 30.0) for h in helpers}, abs=2e-3)
    sync = json.loads((tmp_path / "controller-sync.json").read_text())
    assert sync == {"tiers": tiers["tiers"], "mesh": {}}
    assert sorted(h for h, *_ in posted) == sorted(helpers)
    for h, path, data, cls, port in posted:
        assert (path, cls, port) == ("/control", "control", C.HTTP_PORT)
        msg = helpers[h].decode(data, "control", roles=("master",))
        assert msg.type == "routing"
        assert set(msg.body) == {"version", "tier", "parent", "parent_addr", "children",
                                 "ancestors", "tiers", "live_group"}
        assert msg.body["tier"] == (1 if h in near else 2)
    assert m.traffic.tx["control"] > 0


def test_a_malformed_report_is_counted_with_the_rejections(scenario, tmp_path):
    m = master(scenario, tmp_path)
    from testbed.core.node.master import Neighbours

    m.apply(m.logic.handle(Neighbours("h1", {"neighbours": {"h2": {"bw_mbit": 1}}}), 0.0))
    m.apply(m.logic.handle(Neighbours("h1", {"neighbours": {
        "h2": {"latency_ms": 1, "bw_mbit": 1}}}), 0.0))
    m.events.close()
    assert m.secure.rejected["malformed"] == 1
    kinds = [json.loads(line)["kind"] for line in
             (tmp_path / "logs" / "m1.jsonl").read_text().splitlines()]
    assert kinds[-2:] == ["rejected", "mesh_report"]
    assert json.loads((tmp_path / "controller-sync.json").read_text())["mesh"] == {"h1": ["h2"]}


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / "m1.jsonl").read_text().splitlines()]


def test_the_engine_is_asked_at_its_address_and_its_answer_recorded(scenario, tmp_path):
    m = master(scenario, tmp_path)
    engine = m.plan.engine_at
    assert m.engine == engine.name and m.address(engine.name, 1) == (engine.ip, engine.port)
    assert m.address("h1", 8081) == (m.cfg.helpers["h1"], 8081)
    asked: list[tuple] = []
    answer = json.dumps({"version": 4, "predictions": {"h1": [["vod-0001", 2, 1.0]]},
                         "playheads": {"h1": [["vod-0001", 1]]}}).encode()

    async def fake_post(to, path, data, cls, port=C.HTTP_PORT, timeout=None):
        asked.append((to, path, cls, timeout.total if timeout else None))
        return 200, answer

    m.post = fake_post

    async def play():
        m.fire("forecast", None)
        await asyncio.sleep(0.05)
        for handle in m.timers.values():
            handle.cancel()

    uvloop.run(play())
    m.events.close()
    assert asked == [(engine.name, "/predict", "prediction", 3.0)]
    got = {r["kind"]: r for r in records_of(tmp_path)}
    assert got["forecast_model"]["version"] == 4
    assert got["forecast"]["segments"] == 1 and got["forecast"]["bytes"] == len(answer)
    assert m.origin.forecast_at > -1e9


def test_the_first_forecasts_wait_until_the_engine_listens(scenario, tmp_path):
    # the engine starts after the master (it waits for the credential the master issues):
    # a forecast due before it listens is held, not failed
    m = master(scenario, tmp_path)
    asked: list[float] = []

    async def fake_post(to, path, data, cls, port=C.HTTP_PORT, timeout=None):
        asked.append(time.monotonic())
        return 200, json.dumps({"version": 1, "predictions": {}, "playheads": {}}).encode()

    m.post = fake_post

    async def play():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens there yet
        m.engine_addr = ("127.0.0.1", port)
        m.engine_up = asyncio.get_running_loop().create_task(m.engine_listening())
        m.fire("forecast", None)
        await asyncio.sleep(0.3)
        held = list(asked)
        started = time.monotonic()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        await asyncio.sleep(0.5)
        server.close()
        for handle in m.timers.values():
            handle.cancel()
        return held, started

    held, started = uvloop.run(play())
    m.events.close()
    assert held == [] and len(asked) == 1 and asked[0] >= started
    got = {r["kind"]: r for r in records_of(tmp_path)}
    assert "forecast_failed" not in got and got["forecast"]["segments"] == 0
    assert got["engine_waited"]["listening"] is True and got["engine_waited"]["waited_s"] > 0.25


def test_a_refused_push_order_is_pushed_from_the_origin_with_the_segment(scenario, tmp_path):
    from testbed.core.node.effects import Response

    m = master(scenario, tmp_path)
    h = helper_secure(m, "h2")
    posted: list[tuple] = []

    async def fake_send(helper, path, data, cls, port=C.HTTP_PORT):
        posted.append((helper, path, data, cls, port))
        return 200

    m.send = fake_send
    body = {"video": "vod-0001", "index": 3, "version": 1, "route": ["h1", "h2"], "hop": 1,
            "push_id": "p1", "keep": []}
    m.origin._pending[7] = ("order", body, m.origin.mesh())

    async def play():
        m.apply(m.origin.handle(Response(7, 0), m.clock.now()), m.origin)
        await asyncio.sleep(0.3)

    uvloop.run(play())
    m.events.close()
    (fb,) = [r for r in records_of(tmp_path) if r["kind"] == "push_fallback"]
    assert fb["status"] is None and fb["route"] == ["m1", "h2"]
    ((to, path, data, cls, port),) = posted
    assert (to, path, cls, port) == ("h2", "/mesh", "prefetch", m.plan.push_port)
    msg = h.decode(data, "mesh", roles=("master",))
    assert msg.type == "mesh_data" and msg.body["route"] == ["m1", "h2"]
    assert msg.payload == m.segment("vod-0001", 3, 1)


def test_a_republish_signs_the_new_manifest_and_invalidates(scenario, tmp_path):
    m = master(scenario, tmp_path)
    m.signed = {}
    posted: list[tuple] = []

    async def fake_send(helper, path, data, cls, port=C.HTTP_PORT):
        posted.append((helper, path, data))
        return 200

    m.send = fake_send
    (event,) = m.plan.republish

    async def play():
        m.fire("republish", 0)
        await asyncio.sleep(0.05)

    uvloop.run(play())
    m.events.close()
    assert m.versions[event.video] == 2 and m.signed[event.video]["manifest"]["version"] == 2
    (rec,) = [r for r in records_of(tmp_path) if r["kind"] == "republish"]
    assert sorted(h for h, *_ in posted) == sorted(m.cfg.helpers)  # no tables yet: all
    for h, path, data in posted:
        msg = helper_secure(m, h).decode(data, "control", roles=("master",))
        assert path == "/control" and msg.type == "invalidate"
        assert msg.body["inv_id"] == rec["inv_id"] and msg.body["version"] == 2


def test_push_orders_and_invalidations_leave_under_the_masters_signature(scenario, tmp_path):
    """A push order carries the master's signature on its plan and an invalidation on its
    content; a helper's driver checks both against the CA key, and neither verifies once
    its route (or version) is changed."""
    from testbed.core import protocol as P
    from testbed.core.node.effects import Send

    m = master(scenario, tmp_path)
    posted: list[bytes] = []

    async def fake_send(helper, path, data, cls, port=C.HTTP_PORT):
        posted.append(data)
        return 200

    m.send = fake_send
    order = {"video": "vod-0001", "index": 2, "version": 1, "route": ["h1", "h2"], "hop": 1,
             "push_id": "p-1", "keep": []}
    inval = {"video": "vod-0001", "version": 2, "issued": 1.0, "inv_id": "i-1",
             "route": ["m1"]}

    async def play():
        m.execute_send(Send("h1", "push_order", order, path="/control", cls="control"))
        m.execute_send(Send("h1", "invalidate", inval, path="/control", cls="control"))
        await asyncio.sleep(0.05)

    uvloop.run(play())
    at_h1 = helper_secure(m, "h1")
    order, inval = (dict(at_h1.decode(data, "control", roles=("master",)).body)
                    for data in posted)

    def refused(msg_type: str, body: dict) -> str | None:
        return P.countersign_problem(msg_type, body, at_h1.verifier.verify_ca)

    assert refused("push_order", order) is None and refused("mesh_data", order) is None
    assert refused("invalidate", inval) is None
    assert refused("invalidate", {**inval, "route": ["m1", "h1"]}) is None  # it travels
    assert refused("push_order", {**order, "route": ["h1", "h3"]}) == "unplanned"
    assert refused("invalidate", {**inval, "version": 9}) == "unsigned_invalidation"
    assert refused("mesh_data", {**order, "plan": "zz"}) == "unplanned"


def test_a_restarted_master_goes_on_from_its_saved_state_without_re_keying(scenario,
                                                                             tmp_path):
    m = master(scenario, tmp_path)
    helper_key = m.cfg.credential_path("h3").read_text()
    # what it did before it was killed: a republish, new tables, the first event carried out
    m.versions["vod-0000"] = 3
    m.logic.pingback._version = 7
    m.origin.events_done = 1
    m.save_state()
    m.events.close()
    again = Master(m.cfg)  # the same run directory, the same CA
    again.issue_credentials()
    again.events.close()
    assert again.versions["vod-0000"] == 3 and again.versions["vod-0001"] == 1
    assert again.logic.pingback.version == 7 and again.events_done == 1
    # its next tables are numbered above the ones the helpers hold
    assert again.state_key()[0] == 7
    # nobody re-keyed: the helpers' credentials and the master's own key are as they were
    assert m.cfg.credential_path("h3").read_text() == helper_key
    assert again.identity.public_key == m.identity.public_key
    creds = [r for r in records_of(tmp_path) if r["kind"] == "credentials"]
    assert creds[0]["issued"] and not creds[0]["kept"]
    assert creds[-1]["issued"] == [] and "h3" in creds[-1]["kept"] and "m1" in creds[-1]["kept"]


def test_a_master_with_unreadable_state_starts_afresh_and_says_so(scenario, tmp_path):
    m = master(scenario, tmp_path)
    m.state_path.parent.mkdir(parents=True, exist_ok=True)
    m.state_path.write_text("{torn")
    m.events.close()
    again = Master(m.cfg)
    again.events.close()
    assert again.logic.pingback.version == 0 and set(again.versions.values()) == {1}
    assert any(r["kind"] == "state_unreadable" for r in records_of(tmp_path))
