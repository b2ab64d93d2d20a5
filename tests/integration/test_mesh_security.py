"""A rogue host inside the topology attacks a helper: mesh data without credentials, with a
forged digest, replayed, along a route the master never planned, looping or too long; an
insider's own invalidation; a message captured on its way to one node replayed to
another; 10,000 fuzzed messages into every signed endpoint and the UDP port; malformed
HTTP; malformed telemetry into the prediction engine; a rogue viewer's telemetry flood
into a helper; an insider answering pingback probes with a hold time that would make it
look nearer than the links allow.  Everything is refused (with a 4xx) or held to what the
master can verify, and counted; the cache does not change, and the helper and the engine
keep serving."""

import json
import sys
import time
import xml.etree.ElementTree as ET

from conftest import REPO
from nets import rogue_net

from testbed.core import security as sec
from testbed.harness.results import read_logs
from testbed.harness.run import Deployment
from testbed.scenario import loads_scenario
from testbed.traces import read_trace

QUIET = """
name: rogue
seed: 5
duration_s: 600
topology: {generator: tiered}
content: {videos: 3, live_channels: 0, duration_s: 20, bitrate_kbps: 200, segment_s: 2}
# the engine runs (a prefetch policy is set), but with no push budget nothing is pushed,
# so the caches change only by what the rogue's messages do
delivery: {cache_mb: 2, prefetch: next-segments, push_budget_kbps: 0, tiers: 1, mesh_degree: 1}
viewers: {per_host: 1}
"""


def net():
    return rogue_net(core_delay_ms=5.0, core_bw_mbit=50.0)


def rogue(dep, attack: str, *args: str, ip: str | None = None, host: str = "p1") -> dict:
    ip = ip or dep.configs["h1"]["ip"]
    out = dep.host(host).cmd(f"cd {REPO} && {sys.executable} -m testbed.nodes.rogue {attack} "
                             f"--target {ip} --target-name h1 {' '.join(args)}")
    return json.loads(out.strip().splitlines()[-1])


def cache_of(status: dict) -> dict:
    return {k: v for k, v in status["cache"].items() if k not in ("hits", "misses")}


def only_4xx(codes: dict) -> bool:
    return all(400 <= int(c) < 500 for c in codes)


def test_rogue_host_is_refused_and_the_helper_keeps_serving(run_dir):
    sc = loads_scenario(QUIET)
    with Deployment(sc, run_dir, say=print, spec=net()) as dep:
        secret = (run_dir / "secrets" / "ca.secret").read_bytes()
        insider = sec.Authority.from_secret(secret).issue("h9", "helper", time.time() + 3600)
        ident = run_dir / "insider.json"
        ident.write_text(insider.to_json())
        node_cfg = run_dir / "nodes" / "h1.json"
        before = rogue(dep, "status")
        print("before", before)

        # no credentials: a key the testbed CA never certified, and junk
        got = rogue(dep, "unauth", "--count", "50")
        assert got["codes"] == {"403": 50, "400": 50}, got  # not authentic; not parseable
        master_key = run_dir / "secrets" / "ca.secret"  # to sign push plans as the master
        # a credentialed insider the master ordered to push, whose bytes do not match the
        # signed manifest
        got = rogue(dep, "forged", "--count", "50", "--identity", str(ident),
                    "--ca-secret", str(master_key))
        assert got["codes"] == {"422": 50}, got
        mid = rogue(dep, "status")
        assert cache_of(mid) == cache_of(before)
        assert mid["rejected"].get("bad_digest", 0) == 50

        # the control case: the same insider's correct push, planned by the master, is
        # taken ...
        capture = run_dir / "valid.bin"
        got = rogue(dep, "valid", "--identity", str(ident), "--node-config", str(node_cfg),
                    "--save", str(capture), "--ca-secret", str(master_key))
        assert got["codes"] == {"200": 1}, got
        taken = rogue(dep, "status")
        assert taken["cache"]["inserts"] == before["cache"]["inserts"] + 1
        # ... and replaying it is not
        got = rogue(dep, "replay", "--capture", str(capture), "--count", "50")
        assert got["codes"] == {"403": 50}, got
        after = rogue(dep, "status")
        assert cache_of(after) == cache_of(taken)
        assert after["rejected"].get("replay", 0) == 50
        # every refusal counted once, by reason: 100 without credentials (a foreign CA's
        # certificate; junk), 50 forged digests, 50 replays
        assert sum(after["rejected"].values()) == 200, after["rejected"]
        assert after["rejected"]["bad_certificate"] == 50

        # pushes are routed by the master only: the insider's genuine segment along a
        # route the master never planned is refused (before, h1 cached it); so is a
        # route that loops (before, forwarded at every hop) or is too long, even under a
        # plan signature, and nothing reaches h2
        h2_ip = dep.configs["h2"]["ip"]
        h2_before = rogue(dep, "status", ip=h2_ip)
        got = rogue(dep, "valid", "--identity", str(ident), "--node-config", str(node_cfg),
                    "--index", "1")
        assert got["codes"] == {"403": 1}, got
        too_long = ",".join(["h9", "h1", "h2"] + [f"x{i}" for i in range(40)])
        for route in ("h9,h1,h2,h1,h2", too_long):
            got = rogue(dep, "valid", "--identity", str(ident), "--node-config", str(node_cfg),
                        "--index", "2", "--route", route, "--ca-secret", str(master_key))
            assert got["codes"] == {"400": 1}, (route, got)
        routed = rogue(dep, "status")
        assert cache_of(routed) == cache_of(after)
        assert routed["rejected"]["unplanned"] == 1 and routed["rejected"]["bad_route"] == 2
        time.sleep(1)
        h2_mid = rogue(dep, "status", ip=h2_ip)
        assert cache_of(h2_mid) == cache_of(h2_before)
        assert h2_mid["rejected"] == h2_before["rejected"]

        # invalidations are the master's only: an insider's own invalidation of vod-0000
        # at version 1,000,000 is refused (before, it was taken and forwarded, and every
        # later copy of the video was refused as stale), and a planned push of the video
        # at version 1 is still taken
        got = rogue(dep, "invalidate", "--identity", str(ident), "--video", "vod-0000",
                    "--version", "1000000", "--count", "3")
        assert got["codes"] == {"403": 3}, got
        inval = rogue(dep, "status")
        assert inval["rejected"]["unsigned_invalidation"] == 3, inval["rejected"]
        assert cache_of(inval) == cache_of(routed)
        got = rogue(dep, "valid", "--identity", str(ident), "--node-config", str(node_cfg),
                    "--index", "3", "--ca-secret", str(master_key))
        assert got["codes"] == {"200": 1}, got
        after = rogue(dep, "status")
        assert after["cache"]["inserts"] == routed["cache"]["inserts"] + 1

        # a message names its recipient under the signature: the insider's push that h1
        # took, replayed to h2, is refused there (before, h2's replay guard had never seen
        # it); the master's own pingback probe to h2, captured on h2's link and replayed to
        # h1, is refused and not answered
        got = rogue(dep, "replay", "--capture", str(capture), "--count", "5", ip=h2_ip)
        assert got["codes"] == {"403": 5}, got
        h2_after = rogue(dep, "status", ip=h2_ip)
        assert h2_after["rejected"].get("wrong_recipient", 0) == 5, h2_after["rejected"]
        assert cache_of(h2_after) == cache_of(h2_mid)
        probe = run_dir / "probe.bin"
        out = dep.host("h2").cmd(f"cd {REPO} && {sys.executable} -m testbed.nodes.rogue sniff "
                                 f"--target {dep.configs['h2']['ip']} --save {probe}")
        sniffed = json.loads(out.strip().splitlines()[-1])
        print("sniffed", sniffed)
        assert sniffed["captured"] == 1 and sniffed["from"] == "m1", sniffed
        assert sniffed["to"] == "h2", sniffed
        got = rogue(dep, "udp-replay", "--capture", str(probe), "--count", "3")
        assert got == {"sent": 3, "answered": 0}, got
        assert rogue(dep, "status")["rejected"].get("wrong_recipient", 0) == 3
        after = rogue(dep, "status")

        # 10,000 fuzzed messages over HTTP and 10,000 datagrams: 4xx only, still serving
        got = rogue(dep, "fuzz", "--count", "10000")
        print("fuzz", {k: v for k, v in got.items()})
        assert sum(got["codes"].values()) == 10000 and only_4xx(got["codes"]), got
        assert got["udp_sent"] == 10000
        fuzzed = rogue(dep, "status")
        assert cache_of(fuzzed) == cache_of(after)
        assert got["after_status"] == 200 and got["after_bytes"] > 0
        assert dep.procs["h1"].alive()

        # malformed HTTP and unknown segments: 4xx, and the helper answers afterwards
        got = rogue(dep, "http")
        for a in got["answers"]:
            assert 400 <= a["status"] < 500, a
        assert got["after_status"] == 200
        assert dep.procs["h1"].alive() and dep.procs["m1"].alive()

        # a standard client lists and fetches segments through the DASH MPD
        got = rogue(dep, "get", "--path", "/mpd/vod-0001")
        assert got["status"] == 200
        ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
        urls = [u.get("media") for u in ET.fromstring(got["body"]).iterfind(".//d:SegmentURL", ns)]
        assert len(urls) == 10 and urls[0].endswith("/seg/vod-0001/0?v=1"), urls[:2]
        path = urls[3].split(":8080", 1)[1]
        got = rogue(dep, "get", "--path", path)
        assert got["status"] == 200

        # malformed telemetry into the prediction engine: every case refused with a clear
        # line and counted by reason, the good records kept, the engine still answering
        engine = dep.configs["engine"]
        port = str(engine["extra"]["engine"]["port"])
        ahead = rogue(dep, "status", "--port", port, ip=engine["ip"])
        got = rogue(dep, "telemetry", "--port", port, "--identity", str(ident), "--now",
                    f"{dep.now():.3f}", "--target-name", engine["name"], ip=engine["ip"])
        print("telemetry", json.dumps(got)[:3000])
        assert got["junk"]["status"] == 400 and got["foreign"]["status"] == 403
        words = {"missing_field": "lacks at", "wrong_type": "playhead_s must be a number",
                 "future": "in the future", "raw_viewer_id": "not a pseudonym",
                 "address": "is an address", "other_helper": "is not the sender",
                 "not_a_record": "not an object", "huge_batch": "exceeds 400"}
        for case, text in words.items():
            answer = got[case]["answer"]
            assert got[case]["status"] == 400 and answer["accepted"] == 0, (case, got[case])
            assert text in answer["errors"][0] and "\n" not in answer["errors"][0], answer
        assert got["good"]["status"] == 200 and got["good"]["answer"]["accepted"] == 5
        status = rogue(dep, "status", "--port", port, ip=engine["ip"])
        # the real helpers keep sending their own telemetry meanwhile, hence at least
        assert status["accepted"] >= ahead["accepted"] + 5, status
        assert status["rejected"] == {
            "malformed": 1, "bad_certificate": 1, "missing_field": 1, "wrong_type": 2,
            "future": 1, "not_pseudonym": 1, "address": 1, "wrong_sender": 1,
            "too_large": 1}, status["rejected"]

        # a rogue viewer floods a helper's telemetry: without a session token and with a
        # made-up one, nothing is taken; under a genuine token (it asked for a manifest as
        # a viewer) only the session's burst, the rest refused for its rate; all counted
        got = rogue(dep, "viewer-telemetry", "--count", "20", "--size", "100", "--now",
                    f"{dep.now():.3f}", "--video", "vod-0001")
        print("viewer telemetry", got)
        assert got["no_token"] == {"codes": {"403": 20}, "reasons": {"no_token": 20}}
        assert got["made_up"] == {"codes": {"403": 20}, "reasons": {"bad_token": 20}}
        assert got["manifest"] == {"status": 200, "token": True}
        taken = got["genuine"]["codes"].get("200", 0)
        assert 1 <= taken <= 3, got  # a burst of 200 events: two batches of 100
        assert got["genuine"] == {"codes": {"200": taken, "429": 20 - taken},
                                  "reasons": {"rate_limited": 20 - taken}}
        rejected = rogue(dep, "status")["rejected"]
        assert (rejected["no_token"], rejected["bad_token"], rejected["rate_limited"]) == (
            20, 20, 20 - taken), rejected

        # an insider holding h2's own credential (h2's daemon stopped, so that it answers
        # h2's probes) claims it held every probe 9 ms, to look that much nearer: the master
        # keeps h2 no nearer than the links allow (10 ms there and back over the 5 ms core
        # link) and counts such replies (all of them, unless the host is so loaded that the
        # round trip itself took over 19.5 ms)
        m1 = dep.configs["m1"]["ip"]
        before = rogue(dep, "status", ip=m1)
        assert before["index"]["h2"] >= 10.0, before["index"]
        dep.procs["h2"].stop()
        got = rogue(dep, "lie-held", "--identity", str(run_dir / "secrets" / "h2.json"),
                    "--held", "0.009", "--timeout", "20", ip=h2_ip, host="h2")
        lied = rogue(dep, "status", ip=m1)
        print("lie-held", got, lied["index"], lied["rejected"])
        assert got["answered"] >= 6
        assert lied["index"]["h2"] >= 10.0 - 1e-3, lied["index"]
        assert lied["rejected"].get("held_beyond_floor", 0) >= got["answered"] // 2
        assert lied["tiers"] == before["tiers"]
        attacked_at = dep.now()
        time.sleep(5)
        assert dep.procs["engine"].alive()
    # what reached the engine's store from the rogue viewer: only what its token's rate let
    # through, none of the untokened batches
    stored = read_trace(run_dir / "engine" / "telemetry.csv")
    forged = stored[stored["video"] == "vod-0001"]["playhead_s"]
    assert not forged.isin([666.0, 667.0]).any()
    assert (forged == 777.0).sum() == 100 * taken
    forecasts = [r for r in read_logs(run_dir) if r.get("kind") == "forecast"]
    assert any(r["at"] > attacked_at + 1 for r in forecasts), forecasts[-3:]
    assert not [r for r in read_logs(run_dir) if r.get("kind") == "forecast_failed"]
