"""The signed envelope and the live multicast datagrams: round trips, every tampering
refused with the right reason, limits, and fuzzing that only documented errors escape."""

from __future__ import annotations

import json
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core import protocol as P
from testbed.core.protocol import (
    MAX_HEADER,
    MAX_MESSAGE,
    SCHEMAS,
    Chunk,
    Message,
    ProtocolError,
    Reassembler,
    Signer,
    decode,
    decode_chunk,
    encode_chunks,
    parse,
)
from testbed.core.security import AuthError, Authority, Certificate, ReplayGuard, Verifier

# Fixed keys and time for the whole module: key derivation and signing are the slow part.
CA = Authority.from_secret(b"protocol-tests")
MASTER = CA.identity()
HELPER = CA.issue("h1", "helper", not_after=10_000.0)
VIEWER = CA.issue("v1", "viewer", not_after=10_000.0)
NOW = 1_000.0
VERIFIER = Verifier(CA.public_key)

BODIES = {
    "probe": {"nonce": 42, "sent": 999.5},
    "probe_reply": {"nonce": -7, "sent": 999},
    "peer_probe": {"nonce": 1, "sent": 0.25},
    "routing": {"version": 3, "tier": 2, "parent": "h0", "parent_addr": "10.0.0.2",
                "children": ["h4", "h5"], "ancestors": ["h0", "master"],
                "tiers": [["h0"], ["h1", "h2"]], "live_group": "239.1.1.1"},
    "mesh_data": {"video": "vod-0003", "index": 4, "version": 1, "route": ["h1", "h2"],
                  "hop": 0, "push_id": "p-1", "keep": [["vod-0003", 5]], "plan": "ab" * 64},
    "push_order": {"video": "vod-0003", "index": 4, "version": 1, "route": ["h2", "h3"],
                   "hop": 1, "push_id": "p-2", "keep": [], "plan": ""},
    "invalidate": {"video": "vod-0000", "version": 2, "issued": 60.0, "inv_id": "i-1",
                   "route": [], "auth": "cd" * 64},
    "neighbours": {"neighbours": {"h2": {"latency_ms": 4.5, "bw_mbit": 100.0}}},
    "telemetry": {"events": [{"kind": "start", "viewer": "ab12", "at": 3.5}]},
    "predict": {"helpers": ["h1", "h2"], "top": 20},
    "fetch": {"video": "live-01", "index": 0, "min_version": 0},
    "manifest": {"manifest": {"video_id": "vod-0001", "digests": ["00" * 32]},
                 "signature": "ab" * 64},
}


def signer(identity=HELPER, seq_start: int = 1) -> Signer:
    return Signer(identity, seq_start=seq_start)


def frame(header: bytes, payload: bytes = b"", signature: bytes = b"\0" * 64) -> bytes:
    """An envelope around arbitrary header bytes (for framing and schema tests)."""
    return (b"MCS1" + struct.pack(">I", len(header)) + header
            + struct.pack(">I", len(payload)) + payload + signature)


def header_of(data: bytes) -> dict:
    return parse(data)[0]


def resign(identity, header: dict, payload: bytes = b"") -> bytes:
    """A correctly signed envelope around any header (to test checks after the signature)."""
    unsigned = frame(json.dumps(header).encode(), payload, b"")
    return unsigned + identity.sign(unsigned)


# --------------------------------------------------------------------------- round trips


def test_every_schema_has_a_sample_body():
    assert set(BODIES) == set(SCHEMAS)


@pytest.mark.parametrize("msg_type", sorted(BODIES))
def test_round_trip(msg_type):
    payload = bytes(range(256)) * 3 if msg_type == "mesh_data" else b""
    data = signer(seq_start=77).encode(msg_type, BODIES[msg_type], payload, now=NOW - 1.5)
    msg = decode(data, VERIFIER, ReplayGuard(), NOW)
    assert msg == Message(type=msg_type, sender="h1", role="helper", seq=77, ts=NOW - 1.5,
                          body=json.loads(json.dumps(BODIES[msg_type])), payload=payload)


def test_signer_numbers_messages_and_the_guard_accepts_each_once():
    s, guard = signer(seq_start=10), ReplayGuard()
    msgs = [s.encode("probe", BODIES["probe"], now=NOW) for _ in range(3)]
    assert [decode(m, VERIFIER, guard, NOW).seq for m in reversed(msgs)] == [12, 11, 10]
    assert s.seq == 13


def test_header_is_compact_json_and_small():
    data = signer().encode("mesh_data", BODIES["mesh_data"], b"x" * 100_000, now=NOW)
    (header_len,) = struct.unpack(">I", data[4:8])
    raw = data[8:8 + header_len]
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert header_len < 600
    assert len(data) == 4 + 4 + header_len + 4 + 100_000 + 64


def test_parse_returns_the_signed_part_and_signature():
    data = signer().encode("fetch", BODIES["fetch"], b"abc", now=NOW)
    header, payload, signed, signature = parse(data)
    assert payload == b"abc" and signed + signature == data and len(signature) == 64
    assert header["type"] == "fetch" and header["from"] == "h1" and isinstance(header["cert"], dict)
    assert Certificate.from_dict(header["cert"]) == HELPER.cert
    assert parse(bytearray(data))[0] == header


def test_tuples_encode_as_lists():
    body = dict(BODIES["routing"], children=("h4",), ancestors=("h0", "master"))
    msg = decode(signer().encode("routing", body, now=NOW), VERIFIER, None, NOW)
    assert msg.body["children"] == ["h4"] and msg.body["ancestors"] == ["h0", "master"]


# --------------------------------------------------------------------------- tampering


def _rejected(data: bytes, verifier=VERIFIER, guard=None, now=NOW, roles=None,
              recipient=None) -> str:
    with pytest.raises((ProtocolError, AuthError)) as e:
        decode(data, verifier, guard, now, roles, recipient=recipient)
    return e.value.reason


def test_flipping_any_byte_is_rejected():
    data = signer().encode("probe", BODIES["probe"], b"pay", now=NOW)
    reasons = set()
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            reasons.add(_rejected(bytes(bad)))
    assert "bad_signature" in reasons and "malformed" in reasons


def test_flipping_payload_bytes_of_a_large_message_is_rejected():
    payload = random.Random(1).randbytes(100_000)
    data = signer().encode("mesh_data", BODIES["mesh_data"], payload, now=NOW)
    for i in (len(data) - 64 - 100_000, len(data) - 64 - 50_000, len(data) - 65):
        bad = bytearray(data)
        bad[i] ^= 0x10
        assert _rejected(bytes(bad)) == "bad_signature"


def test_truncated_or_extended_is_malformed():
    data = signer().encode("probe", BODIES["probe"], b"pay", now=NOW)
    for bad in (data[:-1], data + b"\0", data[:10], b"", data[4:]):
        assert _rejected(bad) == "malformed"


def test_certificate_from_another_ca():
    stranger = Authority.from_secret(b"stranger").issue("h1", "helper", 10_000.0)
    assert _rejected(signer(stranger).encode("probe", BODIES["probe"], now=NOW)) == \
        "bad_certificate"


def test_expired_certificate():
    data = signer().encode("probe", BODIES["probe"], now=10_001.0)
    assert _rejected(data, now=10_001.0) == "expired"


def test_revoked_sender():
    v = Verifier(CA.public_key, revoked={"h1"})
    assert _rejected(signer().encode("probe", BODIES["probe"], now=NOW), verifier=v) == \
        "bad_certificate"


def test_replay_and_stale_timestamp():
    guard = ReplayGuard(window_s=30.0)
    data = signer().encode("probe", BODIES["probe"], now=NOW)
    decode(data, VERIFIER, guard, NOW)
    assert _rejected(data, guard=guard, now=NOW + 1) == "replay"
    assert _rejected(data, guard=ReplayGuard(window_s=30.0), now=NOW + 31) == "stale_timestamp"


def test_wrong_role():
    data = signer(VIEWER).encode("telemetry", BODIES["telemetry"], now=NOW)
    assert _rejected(data, roles=("helper", "master")) == "wrong_role"
    assert decode(data, VERIFIER, None, NOW, roles={"viewer"}).role == "viewer"
    assert _rejected(data, roles="viewers") == "wrong_role"   # a string is one role


def test_a_message_is_taken_only_by_the_node_it_names():
    """The master's routing message to h6, replayed to h3: refused there, and h3's replay
    guard learns nothing from it (h6 still takes it)."""
    data = signer(MASTER).encode("routing", BODIES["routing"], now=NOW, to="h6")
    assert header_of(data)["to"] == "h6"
    at_h3 = ReplayGuard()
    assert _rejected(data, guard=at_h3, recipient="h3") == "wrong_recipient"
    assert len(at_h3) == 0
    assert decode(data, VERIFIER, ReplayGuard(), NOW, recipient="h6").to == "h6"
    # a message naming nobody is refused by a node that checks; the name is signed
    anonymous = signer(MASTER).encode("routing", BODIES["routing"], now=NOW)
    assert _rejected(anonymous, recipient="h6") == "wrong_recipient"
    header = header_of(data)
    header["to"] = "h3"
    forged = resign(HELPER, header)  # re-signed by someone else: not the master's any more
    assert _rejected(forged, roles=("master",), recipient="h3") == "bad_signature"
    tampered = bytearray(data)
    at = bytes(data).index(b'"to":"h6"') + 7
    tampered[at] = ord("3")
    assert _rejected(bytes(tampered), recipient="h3") == "bad_signature"


@pytest.mark.parametrize("to", ["", 7, "x" * 300])
def test_a_bad_recipient_name_is_the_senders_error(to):
    with pytest.raises(ValueError, match="to"):
        signer().encode("probe", BODIES["probe"], now=NOW, to=to)


def test_a_push_plan_covers_route_and_keepers_not_the_hop():
    body = {**BODIES["mesh_data"], "route": ["m1", "h1", "h2"], "keep": ["h2", "h1"]}
    base = P.plan_bytes(body)
    assert P.plan_bytes({**body, "hop": 2, "version": 9, "plan": "x"}) == base
    assert P.plan_bytes({**body, "keep": ["h1", "h2"]}) == base        # a set of keepers
    for change in ({"route": ["m1", "h1", "h3"]}, {"keep": ["h2"]}, {"index": 5},
                   {"video": "vod-0004"}, {"push_id": "p-9"}):
        assert P.plan_bytes({**body, **change}) != base, change
    signed = P.countersign("mesh_data", body, CA.sign)
    assert bytes.fromhex(signed["plan"]) == CA.sign(base)
    assert P.countersign_problem("mesh_data", signed, VERIFIER.verify_ca) is None
    assert P.countersign_problem("mesh_data", body, VERIFIER.verify_ca) == "unplanned"
    fetch = BODIES["fetch"]  # not the master's decision: left as it is, never refused
    assert P.countersign("fetch", fetch, CA.sign) is fetch
    assert P.countersign_problem("fetch", fetch, VERIFIER.verify_ca) is None
    sig = CA.sign(base)
    VERIFIER.verify_ca(base, sig)
    with pytest.raises(AuthError):  # a helper's signature is not the master's plan
        VERIFIER.verify_ca(base, HELPER.sign(base))


def test_an_invalidation_is_signed_without_its_route():
    body = BODIES["invalidate"]
    base = P.invalidation_bytes(body)
    assert P.invalidation_bytes({**body, "route": ["m1", "h1", "h5"], "auth": "x"}) == base
    for change in ({"version": 3}, {"video": "vod-0001"}, {"inv_id": "i-2"},
                   {"issued": 61.0}):
        assert P.invalidation_bytes({**body, **change}) != base, change
    VERIFIER.verify_ca(base, CA.sign(base))
    with pytest.raises(AuthError):
        VERIFIER.verify_ca(base, HELPER.sign(base))


def test_route_problem():
    assert P.route_problem(["m1", "h1", "h2"]) is None
    assert "twice" in P.route_problem(["h2", "h8", "h3", "h8", "h3"])
    assert "at most" in P.route_problem([f"h{i}" for i in range(P.MAX_ROUTE + 1)])
    assert P.route_problem([f"h{i}" for i in range(P.MAX_ROUTE)]) is None


def test_certificate_of_another_node():
    header = header_of(signer().encode("probe", BODIES["probe"], now=NOW))
    header["from"] = "h2"                     # h1 signs, claims to be h2
    assert _rejected(resign(HELPER, header)) == "bad_certificate"


def test_message_without_certificate():
    header = header_of(signer().encode("probe", BODIES["probe"], now=NOW))
    del header["cert"]
    assert _rejected(resign(HELPER, header)) == "no_credentials"


def test_junk_certificate_in_a_signed_message():
    header = header_of(signer().encode("probe", BODIES["probe"], now=NOW))
    header["cert"]["public_key"] = "zz"
    assert _rejected(resign(HELPER, header)) == "bad_certificate"


def test_replay_guard_learns_only_from_verified_messages():
    guard = ReplayGuard()
    good = signer(seq_start=5).encode("probe", BODIES["probe"], now=NOW)
    forged = bytearray(good)
    forged[-1] ^= 1
    assert _rejected(bytes(forged), guard=guard) == "bad_signature"
    viewer_msg = signer(VIEWER, seq_start=5).encode("probe", BODIES["probe"], now=NOW)
    assert _rejected(viewer_msg, guard=guard, roles=("helper",)) == "wrong_role"
    assert len(guard) == 0
    decode(good, VERIFIER, guard, NOW)          # seq 5 was not burnt by the forgery
    decode(viewer_msg, VERIFIER, guard, NOW)    # nor by the wrong-role message


def test_checks_run_cheapest_first():
    """Framing before certificate, certificate before signature: a malformed body is
    reported as malformed even with a stranger's certificate and a bad signature."""
    stranger = Authority.from_secret(b"stranger").issue("h1", "helper", 10_000.0)
    header = header_of(signer(stranger).encode("probe", BODIES["probe"], now=NOW))
    header["body"] = {"nonce": "x", "sent": 1.0}
    assert _rejected(frame(json.dumps(header).encode())) == "malformed"
    header["body"] = BODIES["probe"]
    assert _rejected(frame(json.dumps(header).encode())) == "bad_certificate"


# --------------------------------------------------------------------------- schemas and limits


def _header(**changes) -> dict:
    h = header_of(signer().encode("probe", BODIES["probe"], now=NOW))
    h.update(changes)
    return h


@pytest.mark.parametrize("header, why", [
    (b"{", "json"), (b"\xff\xfe{}", "utf-8"), (b"[]", "object"),
    (b'{"type":"probe","from":"h1","seq":1,"ts":NaN,"body":{"nonce":1,"sent":1}}', "NaN"),
    (b'{"type":"probe","from":"h1","seq":1,"ts":1e999,"body":{"nonce":1,"sent":1}}', "inf"),
    (b'{"type":"probe","from":"h1","seq":1,"ts":1,"body":{"nonce":1,"sent":Infinity}}', "inf"),
    (b"[" * 5000 + b"]" * 5000, "deep"),
    (b'{"seq":' + b"9" * 5000 + b"}", "huge int"),
])
def test_unparseable_headers_are_malformed(header, why):
    with pytest.raises(ProtocolError) as e:
        parse(frame(header))
    assert e.value.reason == "malformed", why


@pytest.mark.parametrize("changes", [
    {"extra": 1}, {"from": ""}, {"from": "x" * 257}, {"from": 5}, {"seq": -1}, {"seq": 1 << 63},
    {"seq": True}, {"seq": 1.0}, {"ts": "now"}, {"ts": None}, {"cert": "x"}, {"body": []},
    {"body": None},
])
def test_bad_header_fields_are_malformed(changes):
    with pytest.raises(ProtocolError) as e:
        parse(frame(json.dumps(_header(**changes)).encode()))
    assert e.value.reason == "malformed"


@pytest.mark.parametrize("key", ["type", "from", "seq", "ts", "body"])
def test_missing_header_fields_are_malformed(key):
    h = _header()
    del h[key]
    with pytest.raises(ProtocolError) as e:
        parse(frame(json.dumps(h).encode()))
    assert e.value.reason == "malformed"


@pytest.mark.parametrize("msg_type", ["nope", "", 5, None])
def test_unknown_type(msg_type):
    with pytest.raises(ProtocolError) as e:
        parse(frame(json.dumps(_header(type=msg_type)).encode()))
    assert e.value.reason == "unknown_type"
    with pytest.raises(ProtocolError) as e:
        signer().encode(msg_type, {}, now=NOW)
    assert e.value.reason == "unknown_type"


def _body(msg_type: str, **changes) -> dict:
    return dict(BODIES[msg_type], **changes)


@pytest.mark.parametrize("msg_type, body", [
    ("probe", {"nonce": 1}),                                         # missing field
    ("probe", _body("probe", nonce=1.5)),                            # float for int
    ("probe", _body("probe", nonce=True)),                           # bool is not an int
    ("probe", _body("probe", sent="1")),
    ("probe", _body("probe", sent=float("nan"))),
    ("probe", _body("probe", nonce=1 << 63)),                        # beyond int64
    ("mesh_data", _body("mesh_data", index=-1)),                     # negative index
    ("mesh_data", _body("mesh_data", video="v" * 257)),              # string limit
    ("mesh_data", _body("mesh_data", route="h1")),
    ("mesh_data", _body("mesh_data", keep=[0] * 10_001)),            # list limit
    ("mesh_data", _body("mesh_data", extra="x" * 300)),              # limits apply to extras
    ("neighbours", {"neighbours": []}),
    ("neighbours", {"neighbours": {"k" * 257: 1}}),                  # key limit
    ("telemetry", {"events": [{"x": float("inf")}]}),                # nested float
    ("telemetry", {"events": [[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]}),   # nesting limit
    ("fetch", _body("fetch", min_version=-2)),
])
def test_schema_violations(msg_type, body):
    with pytest.raises(ProtocolError) as e:
        signer().encode(msg_type, body, now=NOW)
    assert e.value.reason == "malformed"
    with pytest.raises(ProtocolError) as e:          # and the same on the receiving side
        parse(frame(json.dumps(_header(type=msg_type, body=body)).encode()))
    assert e.value.reason == "malformed"


def test_values_that_are_not_json_are_refused_on_encode():
    with pytest.raises(ProtocolError) as e:
        signer().encode("telemetry", {"events": [{1, 2}]}, now=NOW)
    assert e.value.reason == "malformed"


def test_extra_body_fields_within_limits_pass():
    body = _body("fetch", hint={"a": [1, 2.5, None, True, "s"]})
    assert decode(signer().encode("fetch", body, now=NOW), VERIFIER, None, NOW).body == body


def test_too_large():
    s = signer()
    with pytest.raises(ProtocolError) as e:
        s.encode("telemetry", {"events": ["x" * 200] * 400}, now=NOW)    # ~80 KB header
    assert e.value.reason == "too_large"
    with pytest.raises(ProtocolError) as e:
        s.encode("mesh_data", BODIES["mesh_data"], b"\0" * MAX_MESSAGE, now=NOW)
    assert e.value.reason == "too_large"
    assert s.seq == 1                         # nothing was sent, no seq used
    for data in (frame(b"{}", b"\0" * MAX_MESSAGE),
                 b"MCS1" + struct.pack(">I", MAX_HEADER + 1) + b"\0" * 100):
        with pytest.raises(ProtocolError) as e:
            parse(data)
        assert e.value.reason == "too_large"
    big = s.encode("mesh_data", BODIES["mesh_data"], b"\1" * (MAX_MESSAGE - 1000), now=NOW)
    assert len(decode(big, VERIFIER, None, NOW).payload) == MAX_MESSAGE - 1000


def test_parse_refuses_non_bytes():
    for junk in (None, "MCS1", 5, [1]):
        with pytest.raises(ProtocolError) as e:
            parse(junk)
        assert e.value.reason == "malformed"


def test_signer_arguments():
    with pytest.raises(ValueError):
        Signer(HELPER, seq_start=-1)
    with pytest.raises(ValueError):
        signer().encode("probe", BODIES["probe"], now=float("nan"))
    with pytest.raises(ProtocolError):
        signer().encode("probe", BODIES["probe"], "text", now=NOW)


def test_protocol_error_reasons_are_closed():
    assert ProtocolError("too_large", "x").reason == "too_large"
    with pytest.raises(ValueError):
        ProtocolError("oops")


# --------------------------------------------------------------------------- fuzzing

_SIGNER = Signer(HELPER)
_SAMPLES = [_SIGNER.encode(t, b, b"payload" if t == "mesh_data" else b"", now=NOW)
            for t, b in sorted(BODIES.items())]
_SAMPLE_HEADERS = [header_of(m) for m in _SAMPLES]
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3),
                   st.dictionaries(st.text(max_size=4), _scalar, max_size=3))


def _edit_header(i: int, path: str, value, drop: bool) -> bytes:
    """A sample header with one field (top level or body) replaced or removed, framed
    with the sample's (now wrong) signature."""
    h = json.loads(json.dumps(_SAMPLE_HEADERS[i % len(_SAMPLE_HEADERS)]))
    target, key = (h["body"], path[5:]) if path.startswith("body.") else (h, path)
    if isinstance(target, dict):
        if drop:
            target.pop(key, None)
        else:
            target[key] = value
    return frame(json.dumps(h).encode(), b"payload", _SAMPLES[i % len(_SAMPLES)][-64:])


def _flip(i: int, pos: int, byte: int) -> bytes:
    data = bytearray(_SAMPLES[i % len(_SAMPLES)])
    data[pos % len(data)] = byte
    return bytes(data)


_BODY_KEYS = sorted({f"body.{k}" for s in SCHEMAS.values() for k in s})
_envelopes = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"MCS1" + b),
    st.builds(lambda h, p: frame(h, p), st.binary(max_size=120), st.binary(max_size=8)),
    st.builds(lambda v: frame(json.dumps(v).encode()), _value),
    st.builds(_edit_header, st.integers(0, 50),
              st.sampled_from(["type", "from", "seq", "ts", "cert", "body", "x"] + _BODY_KEYS),
              _value, st.booleans()),
    st.builds(_flip, st.integers(0, 50), st.integers(0, 2000), st.integers(0, 255)),
)
_GUARD = ReplayGuard(window_s=1e9)


@settings(max_examples=10_000, deadline=None)
@given(_envelopes)
def test_fuzz_parse_and_decode(data):
    """Each input goes to both parse and decode: only ProtocolError and AuthError escape,
    and nothing but an untouched sample ever decodes."""
    try:
        parse(data)
    except ProtocolError:
        pass
    try:
        msg = decode(data, VERIFIER, _GUARD, NOW)
    except (ProtocolError, AuthError):
        return
    assert data in _SAMPLES and msg.sender == "h1"


def _chunk_flip(pos: int, byte: int) -> bytes:
    data = bytearray(_CHUNKS[pos % len(_CHUNKS)])
    data[pos % len(data)] = byte
    return bytes(data)


_CHUNKS = encode_chunks("live-01", 7, 2, bytes(range(256)) * 10, chunk_size=1000)
_datagrams = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: b"MCL1" + b),
    st.builds(lambda v, tail, data: b"MCL1" + bytes((len(v),)) + v
              + struct.pack(">IIHHI", *tail) + data,
              st.binary(max_size=10), st.tuples(st.integers(0, 2**32 - 1),
                                                 st.integers(0, 2**32 - 1),
                                                 st.integers(0, 3), st.integers(0, 3),
                                                 st.integers(0, 40)),
              st.binary(max_size=20)),
    st.builds(_chunk_flip, st.integers(0, 3000), st.integers(0, 255)),
)


@settings(max_examples=10_000, deadline=None)
@given(_datagrams)
def test_fuzz_decode_chunk(dgram):
    """Only ProtocolError escapes, and whatever decodes re-encodes to the same bytes."""
    try:
        c = decode_chunk(dgram)
    except ProtocolError as e:
        assert e.reason == "malformed"
        return
    segment = (b"\0" * c.offset + c.data).ljust(c.total_size, b"\0")
    again = encode_chunks(c.video_id, c.index, c.version, segment, max(1, c.chunk_size))
    assert len(again) == c.n_chunks and again[c.chunk] == dgram


# --------------------------------------------------------------------------- live chunks


@pytest.mark.parametrize("size", [0, 1, 1199, 1200, 1201, 100_000])
def test_chunks_round_trip_in_any_order(size):
    data = random.Random(size).randbytes(size)
    dgrams = encode_chunks("live-01", 12, 3, data)
    assert len(dgrams) == max(1, -(-size // 1200))
    assert all(len(d) <= 1200 + 30 for d in dgrams)
    random.Random(2).shuffle(dgrams)
    r = Reassembler()
    results = [r.add(decode_chunk(d), now=1.0) for d in dgrams]
    assert results[:-1] == [None] * (len(dgrams) - 1)
    assert results[-1] == (("live-01", 12), 3, data)
    assert r.stats["completed"] == 1 and len(r) == 0 and r.pending_bytes == 0


def test_chunk_fields():
    d = encode_chunks("vod-0001", 5, 9, b"a" * 2500, chunk_size=1000)
    assert [decode_chunk(x).chunk for x in d] == [0, 1, 2]
    last = decode_chunk(d[2])
    assert (last.video_id, last.index, last.version, last.n_chunks, last.total_size,
            last.data, last.key, last.chunk_size, last.offset) == \
        ("vod-0001", 5, 9, 3, 2500, b"a" * 500, ("vod-0001", 5), 1000, 2000)


def _dgram(vid=b"live-01", index=0, version=1, chunk=0, n=2, total=10, data=b"x" * 5):
    return b"MCL1" + bytes((len(vid),)) + vid + struct.pack(">IIHHI", index, version, chunk, n,
                                                            total) + data


@pytest.mark.parametrize("dgram", [
    b"", b"MCL1", b"MCL2" + _dgram()[4:], _dgram()[:-6], _dgram(vid=b""),
    _dgram(vid=b"\xff\xfe"), _dgram(n=0), _dgram(chunk=2), _dgram(n=1, total=4),
    _dgram(chunk=0, n=2, total=11), _dgram(chunk=0, n=2, total=20, data=b"x" * 5),
    _dgram(chunk=1, n=2, total=9, data=b"x" * 5), _dgram(chunk=2, n=3, total=11),
    _dgram(chunk=1, n=2, total=10, data=b""), _dgram(chunk=0, data=b""),
    _dgram(chunk=1, n=2, total=10, data=b"x" * 6),
])
def test_bad_datagrams(dgram):
    with pytest.raises(ProtocolError) as e:
        decode_chunk(dgram)
    assert e.value.reason == "malformed"


def test_decode_chunk_refuses_non_bytes():
    with pytest.raises(ProtocolError):
        decode_chunk("MCL1")


@pytest.mark.parametrize("kwargs", [
    {"video_id": ""}, {"video_id": "v" * 256}, {"index": -1}, {"version": 1 << 32},
    {"chunk_size": 0}, {"data": b"x" * 70_000, "chunk_size": 1},
])
def test_encode_chunks_arguments(kwargs):
    args = dict({"video_id": "live-01", "index": 0, "version": 1, "data": b"x"}, **kwargs)
    with pytest.raises(ValueError):
        encode_chunks(**args)


def _chunks(index: int, size: int = 3000, version: int = 1, video: str = "live-01"):
    data = bytes([index % 256]) * size
    return [decode_chunk(d) for d in encode_chunks(video, index, version, data, 1000)], data


def test_duplicates_before_and_after_completion():
    r = Reassembler()
    chunks, data = _chunks(1)
    assert r.add(chunks[0], 0.0) is None
    assert r.add(chunks[0], 0.0) is None
    assert r.add(chunks[1], 0.0) is None
    assert r.add(chunks[2], 0.0) == (("live-01", 1), 1, data)
    assert r.add(chunks[1], 0.5) is None           # late copy: not a new partial
    assert len(r) == 0
    assert r.stats["duplicates"] == 2 and r.stats["completed"] == 1


def test_versions_and_segments_interleave():
    r = Reassembler()
    a, da = _chunks(1, version=1)
    b, db = _chunks(1, version=2)
    c, dc = _chunks(2)
    done = [x for trio in zip(a, b, c) for x in (r.add(trio[0], 0), r.add(trio[1], 0),
                                                 r.add(trio[2], 0)) if x]
    assert done == [(("live-01", 1), 1, da), (("live-01", 1), 2, db), (("live-01", 2), 1, dc)]


def test_expire_drops_old_partials():
    r = Reassembler(timeout_s=10.0)
    a, _ = _chunks(1)
    b, _ = _chunks(2)
    r.add(a[0], now=0.0)
    r.add(b[0], now=5.0)
    assert r.expire(now=10.0) == 0
    assert r.expire(now=10.5) == 1 and len(r) == 1 and r.pending_bytes == 3000
    assert r.stats["expired"] == 1


def test_limits_drop_the_oldest_partial():
    r = Reassembler(max_pending=2)
    parts = [_chunks(i)[0] for i in range(3)]
    for p in parts:
        r.add(p[0], 0.0)
    assert len(r) == 2 and r.stats["dropped_over_limit"] == 1
    assert r.add(parts[0][1], 0.0) is None and len(r) == 2   # segment 0 starts again
    r = Reassembler(max_bytes=5000)
    r.add(_chunks(1)[0][0], 0.0)
    r.add(_chunks(2)[0][0], 0.0)                              # 3000 + 3000 > 5000
    assert len(r) == 1 and r.pending_bytes == 3000
    huge = Chunk("live-01", 9, 1, 0, 2, 6000, b"x" * 3000)
    assert r.add(huge, 0.0) is None and len(r) == 1           # larger than all the memory
    assert r.stats["dropped_over_limit"] == 2


def test_conflicting_chunks_are_ignored():
    r = Reassembler()
    a, data = _chunks(1, size=3000)
    other = [decode_chunk(d) for d in encode_chunks("live-01", 1, 1, b"z" * 2500, 1000)]
    r.add(a[0], 0.0)
    assert r.add(other[2], 0.0) is None and r.stats["conflicts"] == 1
    assert r.add(a[1], 0.0) is None and r.add(a[2], 0.0) == (("live-01", 1), 1, data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 700), st.randoms(use_true_random=False))
def test_reassembly_of_any_order_with_duplicates(size, chunk_size, rnd):
    data = rnd.randbytes(size)
    dgrams = encode_chunks("live-01", 3, 1, data, chunk_size)
    stream = dgrams + rnd.choices(dgrams, k=len(dgrams) // 2)
    rnd.shuffle(stream)
    r = Reassembler()
    out = [x for x in (r.add(decode_chunk(d), 0.0) for d in stream) if x]
    assert out == [(("live-01", 3), 1, data)]
    assert r.stats["duplicates"] == len(stream) - len(dgrams)


def test_reassembler_arguments():
    for kwargs in ({"timeout_s": 0}, {"max_pending": 0}, {"max_bytes": 0}):
        with pytest.raises(ValueError):
            Reassembler(**kwargs)


def test_module_constants():
    assert MAX_MESSAGE == 8 * 1024 * 1024 and MAX_HEADER == 64 * 1024
    assert P.MAGIC == b"MCS1" and P.LIVE_MAGIC == b"MCL1"


def test_a_certificate_by_reference_needs_a_learned_certificate():
    """Signers that leave their certificate out are accepted only by receivers that
    learned it (the master's directory); everyone else sees no credentials."""
    lean = Signer(HELPER, carry_cert=False)
    full = signer()
    msg = lean.encode("probe", BODIES["probe"], now=NOW)
    assert len(msg) + 250 < len(full.encode("probe", BODIES["probe"], now=NOW))
    assert header_of(msg)["cert"] is None
    assert _rejected(msg) == "no_credentials"
    informed = Verifier(CA.public_key)
    informed.learn(HELPER.cert, NOW)
    assert decode(msg, informed, None, NOW).sender == "h1"
    # a forger naming h1 without its key: the learned certificate's key refuses it
    forged = CA.issue("h1", "helper", not_after=10_000.0, key_secret=b"another key")
    assert _rejected(Signer(forged, carry_cert=False).encode("probe", BODIES["probe"],
                                                               now=NOW),
                     verifier=informed) == "bad_signature"
    # only certificates of this CA can be learned
    outsider = Authority.from_secret(b"elsewhere").issue("h2", "helper", not_after=10_000.0)
    with pytest.raises(AuthError) as exc:
        informed.learn(outsider.cert, NOW)
    assert exc.value.reason == "bad_certificate" and informed.known("h2") is None
