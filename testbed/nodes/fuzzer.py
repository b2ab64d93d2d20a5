"""A credentialed fuzzer: validly signed, hostile messages into every authenticated handler.

Run on a rogue host of the topology (only the testbed's own hosts are ever addressed)::

    python -m testbed.nodes.fuzzer PLAN.json

Unlike the rogue host's ``fuzz`` (a foreign CA: everything stops at the signature check),
every message here carries a genuine signature, names its recipient and has a fresh
sequence number, so it gets past authentication and into the handler behind it.  What it
carries is drawn by Hypothesis: per message type, the schema's fields with hostile values
(names of nodes that are and are not there, videos that exist and do not, indexes and
versions up to 2**63, nested junk where a list of names belongs), some bodies off the
schema (a field missing, of the wrong type, one too many), random payloads, and for the
messages the master countersigns either a wrong countersignature or, holding the CA's
secret, a right one over a body no master would send.  A stateful machine
(:class:`FuzzMachine`) draws sequences: it keeps the push ids and invalidation ids it used
and plays them again with other bodies.  Drawing costs about 5 ms a message, so Hypothesis
draws the first :data:`DRAWN` messages and the rest recombine them (a drawn message with
one field taken from another drawn message of its type), each signed afresh.

Targets: a helper (``/mesh``, ``/control``, ``/fetch``, ``/peer-fetch``, its UDP port),
the master (``/fetch``, ``/control``, its UDP port) and the prediction engine
(``/telemetry``, ``/predict``).  Senders: an insider helper and a master-role credential.

The plan (JSON): ``targets`` (``helper``, ``master``, ``engine``: each ``{"name", "ip",
"port"}``), ``helper_identity`` and ``master_identity`` (credential files), ``ca_secret``
(a file; absent: no right countersignatures, as an insider without the CA's secret would
send), ``videos``, ``count`` (messages in all), ``seed`` (the recombination's), ``rate``
(messages per second; absent or 0: as fast as the answers come).
Prints one JSON object:
messages sent by target and type, answers by HTTP status, and the first few answers of
5xx or none at all (``failures``) with what was sent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from testbed.core import protocol as P
from testbed.core import security as sec
from testbed.nodes.rogue import Http

UDP_PORT = 7000
STEPS = 50               # messages per drawn sequence
DRAWN = 5_000            # messages Hypothesis draws; the rest recombine them
KEPT_FAILURES = 20

# -- values -----------------------------------------------------------------------------
INT64 = st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
SMALL = st.integers(min_value=0, max_value=64)
HOSTILE_INTS = st.one_of(SMALL, st.integers(min_value=0, max_value=2 ** 63 - 1),
                         st.sampled_from([0, 1, 2 ** 31, 2 ** 53 + 1, 2 ** 63 - 1]))
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1.0, time.time()]))
TEXT = st.text(max_size=40)


def json_values(names) -> st.SearchStrategy:
    leaf = st.one_of(st.none(), st.booleans(), INT64, FLOATS, TEXT, names)
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
        max_leaves=24)


class Strategies:
    """Hostile bodies per message type, from the protocol's schemas."""

    def __init__(self, nodes: list[str], videos: list[str]) -> None:
        self.names = st.one_of(st.sampled_from(nodes), TEXT, st.just(""),
                               st.text(min_size=200, max_size=256))
        self.videos = st.one_of(st.sampled_from(videos), TEXT,
                                st.sampled_from(["../../etc/passwd", "vod-9999", "live-99"]))
        self.any = json_values(self.names)
        self.routes = st.one_of(st.lists(self.names, max_size=40),
                                st.lists(self.any, max_size=8))

    def field(self, name: str, want: type) -> st.SearchStrategy:
        if name == "video":
            return self.videos
        if name in ("route", "keep", "children", "ancestors", "helpers"):
            return self.routes
        if name == "tiers":
            return st.one_of(st.lists(st.lists(self.names, max_size=8), max_size=6),
                             st.lists(self.any, max_size=6))
        if name in ("neighbours",):
            return st.dictionaries(self.names, st.one_of(
                st.fixed_dictionaries({"latency_ms": st.one_of(FLOATS, self.any),
                                       "bw_mbit": st.one_of(FLOATS, self.any)}),
                self.any), max_size=80)
        if name == "events":
            return st.lists(st.one_of(st.dictionaries(TEXT, self.any, max_size=10),
                                      self.any), max_size=40)
        if name == "manifest":
            return st.dictionaries(TEXT, self.any, max_size=10)
        if want is int:
            return HOSTILE_INTS
        if want is float:
            return FLOATS
        if want is str:
            return st.one_of(self.names, st.text(max_size=256),
                             st.text(alphabet="0123456789abcdef", min_size=128, max_size=128))
        if want is list:
            return st.lists(self.any, max_size=10)
        return st.dictionaries(TEXT, self.any, max_size=10)

    def body(self, msg_type: str) -> st.SearchStrategy:
        schema = P.SCHEMAS[msg_type]
        proper = st.fixed_dictionaries({k: self.field(k, t) for k, t in schema.items()})

        @st.composite
        def off_schema(draw) -> dict:
            body = draw(proper)
            how = draw(st.sampled_from(["drop", "retype", "extra"]))
            key = draw(st.sampled_from(sorted(schema)))
            if how == "drop":
                body.pop(key)
            elif how == "retype":
                body[key] = draw(self.any)
            else:
                body[draw(TEXT)] = draw(self.any)
            return body

        # mostly on the schema (those reach the handlers), some off it
        return st.one_of(proper, proper, proper, off_schema())


# -- the wire ---------------------------------------------------------------------------
class Target:
    """One daemon: a keep-alive HTTP connection and its UDP address."""

    def __init__(self, name: str, ip: str, port: int) -> None:
        self.name, self.ip, self.port = name, ip, port
        self.http = Http(ip, port)

    def post(self, path: str, data: bytes) -> int:
        """The answer's status; 0 when none came (twice)."""
        return self.http.request("POST", path, data)[0]

    def get(self, path: str) -> int:
        return self.http.request("GET", path)[0]


class Fuzz:
    """What the machine sends with, and what it saw."""

    def __init__(self, plan: dict) -> None:
        self.helper, self.master, self.engine = (Target(**plan["targets"][role])
                                                 for role in ("helper", "master", "engine"))
        start = time.time_ns() // 1000
        self.as_helper = P.Signer(sec.Identity.from_json(
            Path(plan["helper_identity"]).read_text()), seq_start=start)
        self.as_master = P.Signer(sec.Identity.from_json(
            Path(plan["master_identity"]).read_text()), seq_start=start)
        secret = plan.get("ca_secret")  # absent: an insider without it (wrong ones only)
        self.ca = sec.Authority.from_secret(Path(secret).read_bytes()) if secret else None
        self.rate = float(plan.get("rate") or 0.0)  # messages per second (0: no pacing)
        self._due = time.monotonic()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setblocking(False)
        self.count = int(plan["count"])
        self.limit = min(self.count, DRAWN)  # what the current phase sends up to
        self.corpus: dict[str, list[tuple]] = {}  # type -> what was drawn
        self.sent: Counter = Counter()
        self.codes: Counter = Counter()
        self.failures: list[dict] = []
        nodes = [self.helper.name, self.master.name, self.engine.name]
        self.s = Strategies(nodes + ["h9"], list(plan["videos"]))

    @property
    def done(self) -> bool:
        return sum(self.sent.values()) >= self.limit

    def send(self, target: Target, path: str, msg_type: str, body: dict,
             payload: bytes = b"", as_master: bool = False) -> None:
        if self.done:
            return
        self.corpus.setdefault(msg_type, []).append((target, path, body, payload, as_master))
        self.deliver(target, path, msg_type, body, payload, as_master)

    def deliver(self, target: Target, path: str, msg_type: str, body: dict,
                payload: bytes = b"", as_master: bool = False) -> None:
        if self.rate:
            self._due = max(self._due + 1.0 / self.rate, time.monotonic())
            time.sleep(max(0.0, self._due - time.monotonic()))
        signer = self.as_master if as_master else self.as_helper
        try:
            data = signer.encode(msg_type, body, payload, now=time.time(), to=target.name)
        except (P.ProtocolError, ValueError, TypeError, OverflowError):
            # the sender's own check refused it: send it anyway, hand-framed and signed
            data = self.hand_framed(signer, msg_type, body, payload, target.name)
        self.sent[f"{target.name}:{msg_type}"] += 1
        if path == "udp":
            self.codes["udp"] += 1
            try:
                self.udp.sendto(data[:65000], (target.ip, UDP_PORT))
                while True:  # the answers that came meanwhile
                    self.udp.recv(65536)
                    self.codes["udp_answer"] += 1
            except OSError:  # nothing more waiting (or a full send buffer: try later)
                pass
            return
        status = target.post(path, data)
        self.codes[status] += 1
        if (status == 0 or status >= 500) and len(self.failures) < KEPT_FAILURES:
            self.failures.append({"target": target.name, "path": path, "type": msg_type,
                                  "status": status, "body": json.dumps(body)[:400]})

    @staticmethod
    def hand_framed(signer: P.Signer, msg_type: str, body: dict, payload: bytes,
                    to: str) -> bytes:
        """A signed message the encoder would not make (off the schema): the same framing,
        the signer's key over it."""
        ok = signer.encode("probe", {"nonce": 1, "sent": 1.0}, now=time.time(), to=to)
        header = P.parse(ok)[0]
        header["type"], header["body"] = msg_type, body
        raw = json.dumps(header, separators=(",", ":"), default=str).encode()
        signed = P.MAGIC + len(raw).to_bytes(4, "big") + raw + \
            len(payload).to_bytes(4, "big") + payload
        return signed + signer.identity.sign(signed)

    def recombine(self, rng: random.Random) -> None:
        """Send the rest: drawn messages, each with one field from another of its type."""
        kinds = sorted(self.corpus)
        while sum(self.sent.values()) < self.count:
            msg_type = rng.choice(kinds)
            drawn = self.corpus[msg_type]
            target, path, body, payload, as_master = rng.choice(drawn)
            other = rng.choice(drawn)[2]
            if isinstance(body, dict) and isinstance(other, dict) and other:
                key = rng.choice(sorted(other, key=str))
                body = {**body, key: other[key]}
            self.deliver(target, path, msg_type, body, payload, as_master)

    def countersigned(self, msg_type: str, body: dict, right: bool) -> dict:
        try:
            return (P.countersign(msg_type, body, self.ca.sign) if right and self.ca
                    else body)
        except (KeyError, TypeError, ValueError, OverflowError):
            return body


class FuzzMachine(RuleBasedStateMachine):
    """Sequences of hostile, validly signed messages (see the module)."""

    fz: Fuzz  # set by :func:`run`
    push_ids = Bundle("push_ids")
    inv_ids = Bundle("inv_ids")

    @initialize(target=push_ids, push_id=TEXT)
    def first_push(self, push_id):
        return push_id

    @initialize(target=inv_ids, inv_id=TEXT)
    def first_invalidation(self, inv_id):
        return inv_id

    # -- a helper -----------------------------------------------------------------------
    @rule(target=push_ids, data=st.data(), push_id=push_ids, again=st.booleans(),
          right=st.booleans(), payload=st.binary(max_size=2048))
    def mesh_data(self, data, push_id, again, right, payload):
        body = data.draw(self.fz.s.body("mesh_data"))
        if again and "push_id" in body:
            body["push_id"] = push_id
        body = self.fz.countersigned("mesh_data", body, right)
        self.fz.send(self.fz.helper, "/mesh", "mesh_data", body, payload)
        return str(body.get("push_id", push_id))[:64]

    @rule(data=st.data(), path=st.sampled_from(["/fetch", "/peer-fetch"]))
    def helper_fetch(self, data, path):
        self.fz.send(self.fz.helper, path, "fetch", data.draw(self.fz.s.body("fetch")))

    @rule(data=st.data(), msg_type=st.sampled_from(["routing", "push_order"]),
          right=st.booleans())
    def helper_control(self, data, msg_type, right):
        body = self.fz.countersigned(msg_type, data.draw(self.fz.s.body(msg_type)), right)
        self.fz.send(self.fz.helper, "/control", msg_type, body, as_master=True)

    @rule(target=inv_ids, data=st.data(), inv_id=inv_ids, right=st.booleans(),
          as_master=st.booleans())
    def invalidate(self, data, inv_id, right, as_master):
        body = data.draw(self.fz.s.body("invalidate"))
        if "inv_id" in body:
            body["inv_id"] = inv_id
        if right and "video" in body:  # a real countersignature only on no real video
            body["video"] = f"fuzz-{body['video']}"[:256]
        body = self.fz.countersigned("invalidate", body, right)
        self.fz.send(self.fz.helper, "/control", "invalidate", body, as_master=as_master)
        return str(body.get("inv_id", inv_id))[:64]

    @rule(data=st.data(), msg_type=st.sampled_from(["probe", "peer_probe", "probe_reply"]))
    def helper_udp(self, data, msg_type):
        self.fz.send(self.fz.helper, "udp", msg_type, data.draw(self.fz.s.body(msg_type)),
                     as_master=msg_type == "probe")

    # -- the master ----------------------------------------------------------------------
    @rule(data=st.data())
    def master_fetch(self, data):
        self.fz.send(self.fz.master, "/fetch", "fetch", data.draw(self.fz.s.body("fetch")))

    @rule(data=st.data(), payload=st.one_of(st.binary(max_size=512), st.just(b"[]"),
                                            st.just(b'[["vod-0000", 1, 1]]')))
    def master_neighbours(self, data, payload):
        self.fz.send(self.fz.master, "/control", "neighbours",
                     data.draw(self.fz.s.body("neighbours")), payload)

    @rule(data=st.data())
    def master_udp(self, data):
        self.fz.send(self.fz.master, "udp", "probe_reply",
                     data.draw(self.fz.s.body("probe_reply")))

    # -- the engine ----------------------------------------------------------------------
    @rule(data=st.data())
    def engine_telemetry(self, data):
        self.fz.send(self.fz.engine, "/telemetry", "telemetry",
                     data.draw(self.fz.s.body("telemetry")))

    @rule(data=st.data(), extra=st.dictionaries(
        st.sampled_from(["predictor", "horizon_s"]), json_values(st.just("x")), max_size=2))
    def engine_predict(self, data, extra):
        body = {**data.draw(self.fz.s.body("predict")), **extra}
        self.fz.send(self.fz.engine, "/predict", "predict", body, as_master=True)


class Stopped(BaseException):
    """SIGTERM: stop sending and say what was sent (not an Exception, so that Hypothesis
    does not take it for a failing example)."""


_RUNNING: dict = {}  # the fuzz under way and when it began, for a SIGTERM's totals


def _stop(signum, frame) -> None:
    """SIGTERM: say what was sent and leave at once.  Raising into Hypothesis instead may
    have it replay the interrupted example (sending on) until the sender's grace runs out
    and it is killed, and then nothing at all is said."""
    fz, t = _RUNNING.get("fz"), _RUNNING.get("t")
    if fz is None:
        raise Stopped
    sys.stdout.write(json.dumps(totals(fz, t, None, None, stopped=True)) + "\n")
    sys.stdout.flush()
    os._exit(0)


def totals(fz: Fuzz, t: float, drawn_s: float | None, alive: dict | None,
           stopped: bool) -> dict:
    """What ``fz`` sent and saw since ``t`` (monotonic)."""
    return {"sent": sum(fz.sent.values()), "by_type": dict(fz.sent),
            "codes": {str(k): v for k, v in fz.codes.items()}, "failures": fz.failures,
            "drawn": min(fz.count, DRAWN),
            "drawn_s": round(drawn_s if drawn_s is not None else time.monotonic() - t, 1),
            "seconds": round(time.monotonic() - t, 1), "status_after": alive,
            "stopped": stopped}


def run(plan: dict) -> dict:
    """Send ``plan["count"]`` messages (fewer when stopped by SIGTERM: ``stopped``); what
    was sent and answered."""
    t = time.monotonic()
    fz = FuzzMachine.fz = Fuzz(plan)
    _RUNNING.update(fz=fz, t=t)
    examples = math.ceil(fz.limit / STEPS) * 2  # a sequence may stop short: ask for more
    how = settings(max_examples=examples, stateful_step_count=STEPS, deadline=None,
                   database=None, phases=[Phase.generate],
                   suppress_health_check=list(HealthCheck))
    drawn_s, stopped = None, False
    try:
        while not fz.done:
            before = sum(fz.sent.values())
            run_state_machine_as_test(FuzzMachine, settings=how)
            if sum(fz.sent.values()) == before:
                break
        drawn_s = time.monotonic() - t
        fz.limit = fz.count
        fz.recombine(random.Random(int(plan.get("seed", 1))))
        alive = {t.name: t.get("/status") for t in (fz.helper, fz.master, fz.engine)}
    except Stopped:
        stopped, alive = True, None
    _RUNNING.clear()
    return totals(fz, t, drawn_s, alive, stopped)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m testbed.nodes.fuzzer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", type=Path, help="the fuzz plan (JSON, see above)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    print(json.dumps(run(json.loads(args.plan.read_text()))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
