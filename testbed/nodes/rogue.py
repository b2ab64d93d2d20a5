"""A rogue host: attacks a helper from inside the topology and reports what came back.

Run in a Mininet host's namespace (only the testbed's own hosts are ever addressed)::

    python -m testbed.nodes.rogue ATTACK --target IP [--identity FILE] [--capture FILE]
                                  [--count N] [--seed S]

Signed messages name their recipient (``--target-name``).  Attacks (each prints one JSON
object: HTTP status -> count, plus details):

- ``unauth``: mesh data signed by a key the testbed CA never certified, and junk bytes;
- ``forged``: mesh data from a credentialed insider whose bytes do not match the signed
  manifest's digest (``--identity``: a credential the CA issued; ``--ca-secret``: the
  master planned the push);
- ``valid``: one push of the right bytes from an insider, kept with ``--save``: taken when
  the master planned it, refused when not, or when its ``--route`` loops or is too long;
- ``replay``: a valid message captured earlier (``--capture``), sent again;
- ``invalidate``: an insider's own invalidation (``--version``, say a huge one) of
  ``--video``;
- ``sniff``: run on another testbed host, capture the first signed datagram of
  ``--msg-type`` arriving there (the master's pingback probe) into ``--save``;
- ``udp-replay``: send such a capture to the target's UDP port, counting the answers;
- ``lie-held``: in a helper's host with its credential, its daemon stopped, answer the
  master's pingback probes claiming a hold time (``--held``) that makes it look nearer;
- ``fuzz``: ``--count`` random and mutated messages into every signed endpoint and the
  UDP port (datagrams crafted with scapy), then checks the helper still serves;
- ``http``: malformed HTTP (bad request lines, paths, methods, headers) on a raw socket;
- ``get``: a plain ``GET --path`` (e.g. the DASH MPD), as a standard client would;
- ``status``: the helper's ``GET /status`` (cache, rejections), to compare before and after;
- ``telemetry``: malformed telemetry into the prediction engine, from outside and from a
  credentialed insider (``--port`` the engine's, ``--now`` the run's time);
- ``viewer-telemetry``: a rogue viewer floods a helper's ``/telemetry`` with ``--count``
  batches of ``--size`` forged player events: with no session token, with a made-up one,
  then under a genuine token it got with a manifest as viewer ``rogue-viewer``.  Forged
  events carry the playhead 666 (no token), 667 (a made-up one) or 777 (the genuine one),
  so what reached the engine can be told apart.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import random
import socket
import sys
import time
from collections import Counter
from pathlib import Path

from testbed.core import protocol as P
from testbed.core import security as sec

HTTP_PORT = 8080
UDP_PORT = 7000
SIGNED_PATHS = ("/mesh", "/control", "/fetch", "/peer-fetch")


class Http:
    """One keep-alive connection, re-opened when the server closes it."""

    def __init__(self, ip: str, port: int = HTTP_PORT):
        self.ip = ip
        self.port = port
        self.conn = http.client.HTTPConnection(ip, port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.ip, self.port, timeout=10)
                if attempt:
                    return 0, b""
        return 0, b""


def mesh_body(route: list[str], video: str, index: int, version: int) -> dict:
    return {"video": video, "index": index, "version": version, "route": route, "hop": 1,
            "push_id": "rogue", "keep": [], "plan": ""}


def planned(args, body: dict) -> dict:
    """``body`` with a plan signature: the master's when ``--ca-secret`` is given (a push
    the master did order from this insider), none otherwise (a route nobody planned)."""
    if not args.ca_secret:
        return body
    master = sec.Authority.from_secret(Path(args.ca_secret).read_bytes())
    return P.countersign("mesh_data", body, master.sign)


def route_of(args, ident: sec.Identity) -> list[str]:
    return args.route.split(",") if args.route else [ident.cert.node_id, args.target_name]


def attack_unauth(args, h: Http) -> dict:
    outsider = sec.Authority.from_secret(b"not the testbed's CA").issue(
        "h1", "helper", time.time() + 3600)
    signer = P.Signer(outsider, seq_start=time.time_ns() // 1000)
    codes: Counter = Counter()
    for i in range(args.count):
        msg = signer.encode("mesh_data", mesh_body(["h1", args.target_name], args.video, i % 3,
                                                   1), b"\0" * 1000, now=time.time(),
                             to=args.target_name)
        codes[h.request("POST", "/mesh", msg)[0]] += 1
        codes[h.request("POST", "/mesh", b"MCS1" + bytes(random.randbytes(200)))[0]] += 1
    return {"codes": dict(codes)}


def attack_forged(args, h: Http) -> dict:
    ident = sec.Identity.from_json(Path(args.identity).read_text())
    signer = P.Signer(ident, seq_start=time.time_ns() // 1000)
    codes: Counter = Counter()
    for i in range(args.count):
        payload = random.randbytes(args.size)
        msg = signer.encode("mesh_data", planned(args, mesh_body(
            route_of(args, ident), args.video, i % 3, args.version)),
            payload, now=time.time(), to=args.target_name)
        codes[h.request("POST", "/mesh", msg)[0]] += 1
    return {"codes": dict(codes)}


def attack_valid(args, h: Http) -> dict:
    """The right bytes of a segment pushed by a credentialed insider: taken when the master
    planned it (``--ca-secret``: the control case), refused when nobody did or when its
    route (``--route a,b,...``) loops or is too long; ``--save`` keeps it for a replay."""
    from testbed.core.content import segment_bytes
    from testbed.nodes.common import NodeConfig

    plan = NodeConfig.load(args.node_config).node_plan()
    video = plan.catalogue()[args.video]
    ident = sec.Identity.from_json(Path(args.identity).read_text())
    payload = segment_bytes(plan.seed, video, args.index, args.version)
    msg = P.Signer(ident, seq_start=time.time_ns() // 1000).encode("mesh_data", planned(
        args, mesh_body(route_of(args, ident), args.video, args.index, args.version)),
        payload, now=time.time(), to=args.target_name)
    if args.save:
        Path(args.save).write_bytes(msg)
    status, _ = h.request("POST", "/mesh", msg)
    return {"codes": {status: 1}}


def attack_invalidate(args, h: Http) -> dict:
    """An invalidation of ``--video`` at version ``--version`` made by a credentialed
    insider (``--identity``), not by the master, sent ``--count`` times to the target's
    ``/control``."""
    ident = sec.Identity.from_json(Path(args.identity).read_text())
    signer = P.Signer(ident, seq_start=time.time_ns() // 1000)
    codes: Counter = Counter()
    for i in range(args.count):
        body = {"video": args.video, "version": args.version, "issued": time.time(),
                "inv_id": f"rogue-{i}", "route": [ident.cert.node_id], "auth": ""}
        msg = signer.encode("invalidate", body, now=time.time(), to=args.target_name)
        codes[h.request("POST", "/control", msg)[0]] += 1
    return {"codes": dict(codes)}


def attack_status(args, h: Http) -> dict:
    status, body = h.request("GET", "/status")
    return json.loads(body) if status == 200 else {"status": status}


def attack_get(args, h: Http) -> dict:
    """A plain GET of ``--path`` (what a standard HTTP client or DASH player would do)."""
    status, body = h.request("GET", args.path)
    return {"status": status, "body": body.decode(errors="replace")[:200_000]}


def attack_replay(args, h: Http) -> dict:
    data = Path(args.capture).read_bytes()
    codes: Counter = Counter()
    for _ in range(args.count):
        codes[h.request("POST", args.path, data)[0]] += 1
    return {"codes": dict(codes), "sha256": hashlib.sha256(data).hexdigest()[:16]}


def attack_sniff(args, h: Http) -> dict:
    """Run on a host of the topology: capture the first signed datagram of type
    ``--msg-type`` arriving there (the master's pingback probe, say) into ``--save``."""
    from scapy.all import UDP, conf, sniff

    conf.verb = 0
    want = f'"type":{json.dumps(args.msg_type)}'.encode()

    def signed(pkt) -> bool:
        data = bytes(pkt[UDP].payload) if UDP in pkt else b""
        return data[:4] == P.MAGIC and want in data[:200]

    got = sniff(filter=f"udp dst port {UDP_PORT}", lfilter=signed, count=1,
                timeout=args.timeout)
    if not got:
        return {"captured": 0}
    data = bytes(got[0][UDP].payload)
    Path(args.save).write_bytes(data)
    header = P.parse(data)[0]
    return {"captured": 1, "type": header["type"], "from": header["from"],
            "to": header.get("to"), "bytes": len(data)}


def attack_udp_replay(args, h: Http) -> dict:
    """Send a captured datagram (``--capture``) to the target's UDP port ``--count``
    times; count the datagrams that come back (a probe answered is a probe accepted)."""
    data = Path(args.capture).read_bytes()
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        for _ in range(args.count):
            sock.sendto(data, (args.target, UDP_PORT))
            try:
                sock.recv(65536)
                answered += 1
            except OSError:  # the timeout: no answer
                pass
    return {"sent": args.count, "answered": answered}


def attack_lie_held(args, h: Http) -> dict:
    """Stand in for the helper whose credential ``--identity`` is (run in its host, its
    daemon stopped; ``--target`` its address): for ``--timeout`` seconds answer the
    master's pingback probes, each claiming to have held the probe ``--held`` seconds, so
    as to look that much nearer.  Counts the probes answered."""
    ident = sec.Identity.from_json(Path(args.identity).read_text())
    signer = P.Signer(ident, seq_start=time.time_ns() // 1000)
    answered = 0
    deadline = time.monotonic() + args.timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.target, UDP_PORT))
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                data, addr = sock.recvfrom(65536)
                header = P.parse(data)[0]
            except (OSError, P.ProtocolError):
                continue
            if header["type"] != "probe":
                continue
            body = {"nonce": header["body"]["nonce"], "sent": header["body"]["sent"],
                    "held": args.held}
            sock.sendto(signer.encode("probe_reply", body, now=time.time(), to=header["from"]),
                        addr)
            answered += 1
    return {"answered": answered}


def _mutations(rng: random.Random, samples: list[bytes]) -> bytes:
    kind = rng.randrange(5)
    if kind == 0 or not samples:
        return rng.randbytes(rng.randrange(0, 2048))
    base = bytearray(rng.choice(samples))
    if kind == 1:  # flip bytes
        for _ in range(rng.randrange(1, 8)):
            base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # truncate
        base = base[:rng.randrange(len(base))]
    elif kind == 3:  # lie about lengths
        base[4:8] = rng.randrange(1 << 32).to_bytes(4, "big")
    else:  # splice junk into the JSON header
        at = rng.randrange(8, max(9, min(len(base), 200)))
        base[at:at] = rng.choice([b'"', b"{", b"\xff", b"null", b'"hop":-1', b"1e999"])
    return bytes(base)


def attack_fuzz(args, h: Http) -> dict:
    from scapy.all import IP, UDP, Raw, conf, send  # crafted datagrams

    rng = random.Random(args.seed)
    outsider = sec.Authority.from_secret(b"fuzz CA").issue("h1", "helper", time.time() + 3600)
    signer = P.Signer(outsider, seq_start=time.time_ns() // 1000)
    samples = [signer.encode(t, b, p, now=time.time(), to=args.target_name) for t, b, p in (
        ("mesh_data", mesh_body(["h1", args.target_name], args.video, 0, 1), b"x" * 300),
        ("invalidate", {"video": args.video, "version": 2, "issued": time.time(),
                        "inv_id": "x", "route": ["h1"], "auth": ""}, b""),
        ("fetch", {"video": args.video, "index": 0, "min_version": 0}, b""),
        ("probe", {"nonce": 1, "sent": time.time()}, b""),
    )]
    codes: Counter = Counter()
    t = time.monotonic()
    for i in range(args.count):
        codes[h.request("POST", SIGNED_PATHS[i % len(SIGNED_PATHS)],
                        _mutations(rng, samples))[0]] += 1
    http_s = time.monotonic() - t
    conf.verb = 0
    dgrams = [IP(dst=args.target) / UDP(sport=40000 + i % 1000, dport=UDP_PORT)
              / Raw(load=_mutations(rng, samples)[:1400]) for i in range(args.count)]
    t = time.monotonic()
    send(dgrams, verbose=False)
    udp_s = time.monotonic() - t
    status, body = h.request("GET", f"/seg/{args.video}/0", headers={"X-Viewer": "rogue"})
    return {"codes": dict(codes), "http_s": round(http_s, 2), "udp_sent": len(dgrams),
            "udp_s": round(udp_s, 2), "after_status": status, "after_bytes": len(body)}


BAD_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /seg/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /seg/vod-0000/not-a-number HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /seg/vod-0000/-1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /seg/vod-0000/99999999 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /seg/no-such-video/0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /manifest/no-such-video HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /seg/vod-0000/0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{oops",
    b"POST /telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"viewer\":1}",
    b"POST /mesh HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /mesh HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc",
    b"GET /probe?bytes=-5 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /probe?bytes=999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /seg/vod-0000/0 HTTP/9.9\r\nHost: x\r\n\r\n",
]


def attack_http(args, h: Http) -> dict:
    answers = []
    for raw in BAD_REQUESTS:
        with socket.create_connection((args.target, HTTP_PORT), timeout=10) as s:
            s.sendall(raw)
            try:
                line = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            except OSError as exc:
                line = f"error {exc}"
        code = int(line.split()[1]) if line.startswith("HTTP/") else 0
        answers.append({"request": raw[:60].decode(errors="replace"), "status": code,
                        "line": line[:80]})
    status, _ = h.request("GET", f"/manifest/{args.video}")
    return {"answers": answers, "after_status": status}


def attack_telemetry(args, h: Http) -> dict:
    """Telemetry into the prediction engine (``--target`` its address, ``--port`` its port):
    junk and a foreign CA's batch, then batches from a credentialed insider that each break
    one rule; finally one good batch (the control case).  Per case: the HTTP status and
    the engine's answer."""
    from testbed.core.telemetry import MAX_BATCH, anonymise

    ident = sec.Identity.from_json(Path(args.identity).read_text())
    me = ident.cert.node_id
    signer = P.Signer(ident, seq_start=time.time_ns() // 1000)
    now = float(args.now)

    def rec(**change):
        r = {"kind": "request", "viewer": anonymise("rogue-viewer", b"rogue-key"),
             "video": args.video, "playhead_s": 2.0, "at": now, "helper": me, "index": 1}
        r.update(change)
        return {k: v for k, v in r.items() if v is not None}

    cases = {
        "missing_field": [rec(at=None)],
        "wrong_type": [rec(playhead_s="two")],
        "future": [rec(at=now + 3600.0)],
        "raw_viewer_id": [rec(viewer="v1-0")],
        "address": [rec(video="10.0.0.9")],
        "other_helper": [rec(helper="h2" if me != "h2" else "h1")],
        "not_a_record": ["junk"],
        "huge_batch": [rec(index=i % 50) for i in range(MAX_BATCH + 1)],
        "good": [rec(index=i) for i in range(5)],
    }
    out: dict = {}
    outsider = sec.Authority.from_secret(b"not the testbed's CA").issue(
        me, "helper", time.time() + 3600)
    foreign = P.Signer(outsider, seq_start=time.time_ns() // 1000).encode(
        "telemetry", {"events": cases["good"]}, now=time.time(), to=args.target_name)
    for name, data in (("junk", b"this is not a message"), ("foreign", foreign)):
        status, body = h.request("POST", "/telemetry", data)
        out[name] = {"status": status, "answer": body.decode(errors="replace")[:200]}
    for name, events in cases.items():
        msg = signer.encode("telemetry", {"events": events}, now=time.time(),
                            to=args.target_name)
        status, body = h.request("POST", "/telemetry", msg)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = body.decode(errors="replace")[:200]
        out[name] = {"status": status, "answer": answer}
    return out


def attack_viewer_telemetry(args, h: Http) -> dict:
    """See the module: per phase, HTTP status -> count and the refusal reasons."""
    from testbed.core.records import TOKEN_HEADER

    viewer, video = "rogue-viewer", args.video

    def flood(token: str | None, playhead: float) -> dict:
        codes: Counter = Counter()
        reasons: Counter = Counter()
        for _ in range(args.count):
            batch = {"viewer": viewer, "video": video, "events": [
                {"kind": "start", "video": video, "playhead_s": playhead, "at": float(args.now)}
                for _ in range(args.size)]}
            if token is not None:
                batch["token"] = token
            status, body = h.request("POST", "/telemetry", json.dumps(batch).encode())
            codes[status] += 1
            if status != 200:
                try:
                    reasons[json.loads(body)["reason"]] += 1
                except (ValueError, KeyError, TypeError):
                    reasons["?"] += 1
        return {"codes": dict(codes), "reasons": dict(reasons)}

    out = {"no_token": flood(None, 666.0), "made_up": flood("0" * 32, 667.0)}
    h.conn.request("GET", f"/manifest/{video}", headers={"X-Viewer": viewer})
    r = h.conn.getresponse()
    r.read()
    token = r.getheader(TOKEN_HEADER, "")
    out["manifest"] = {"status": r.status, "token": bool(token)}
    out["genuine"] = flood(token, 777.0)
    return out


ATTACKS = {"telemetry": attack_telemetry, "viewer-telemetry": attack_viewer_telemetry,
           "unauth": attack_unauth, "forged": attack_forged, "valid": attack_valid,
           "invalidate": attack_invalidate, "replay": attack_replay, "fuzz": attack_fuzz,
           "http": attack_http, "status": attack_status, "get": attack_get,
           "sniff": attack_sniff, "udp-replay": attack_udp_replay,
           "lie-held": attack_lie_held}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.nodes.rogue")
    ap.add_argument("attack", choices=sorted(ATTACKS))
    ap.add_argument("--target", required=True, help="the helper's (or engine's) address")
    ap.add_argument("--port", type=int, default=HTTP_PORT, help="its HTTP port")
    ap.add_argument("--now", type=float, default=0.0, help="run time now (telemetry)")
    ap.add_argument("--target-name", default="h1")
    ap.add_argument("--identity", help="an insider credential (forged)")
    ap.add_argument("--capture", help="a captured message (replay)")
    ap.add_argument("--save", help="keep the message sent (valid)")
    ap.add_argument("--node-config", help="a node configuration: seed and catalogue (valid)")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--path", default="/mesh", help="where to replay (replay), what to GET (get)")
    ap.add_argument("--video", default="vod-0000")
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--msg-type", default="probe", help="what to capture (sniff)")
    ap.add_argument("--ca-secret", help="sign push plans as the master would (forged, valid)")
    ap.add_argument("--route", help="a push's route, comma-separated (forged, valid)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="how long to wait (sniff) or to answer (lie-held)")
    ap.add_argument("--held", type=float, default=0.0,
                    help="the hold time claimed, in seconds (lie-held)")
    args = ap.parse_args(argv)
    if not args.target.startswith("10."):
        print("error: --target must be a testbed host address (10.x)", file=sys.stderr)
        return 2
    h = Http(args.target, args.port)
    print(json.dumps(ATTACKS[args.attack](args, h)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
