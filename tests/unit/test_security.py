"""The testbed CA, identities, certificate checks and the replay guard."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core import security as sec
from testbed.core.security import (
    FOREVER,
    AuthError,
    Authority,
    Certificate,
    Identity,
    ReplayGuard,
    Verifier,
    sign_ca,
)

# One CA and identity for the whole module: key derivation is the slow part.
CA = Authority.from_secret(b"test-ca")
OTHER_CA = Authority.from_secret(b"another-ca")
HELPER = CA.issue("h1", "helper", not_after=1000.0)
NOW = 500.0


def reason(exc_info) -> str:
    return exc_info.value.reason


# --------------------------------------------------------------------------- keys


def test_authority_is_deterministic_per_secret():
    again = Authority.from_secret(b"test-ca")
    assert again.public_key == CA.public_key
    assert len(CA.public_key) == 32
    assert OTHER_CA.public_key != CA.public_key
    assert again.sign(b"x") == CA.sign(b"x") == sign_ca(CA, b"x")


def test_issued_keys_are_deterministic_and_distinct():
    assert CA.issue("h1", "helper", 1000.0).cert == HELPER.cert
    assert CA.issue("h2", "helper", 1000.0).public_key != HELPER.public_key
    # the same node under another CA gets another key: node keys depend on the CA secret
    assert OTHER_CA.issue("h1", "helper", 1000.0).public_key != HELPER.public_key
    a = CA.issue("v1", "viewer", 10.0, key_secret=b"k")
    b = OTHER_CA.issue("v1", "viewer", 10.0, key_secret=b"k")
    assert a.public_key == b.public_key          # key_secret alone decides the key
    assert a.cert.signature != b.cert.signature  # but each CA signs its own certificate
    # the CA secret used as a node secret does not reproduce the CA key
    assert CA.issue("x", "helper", 10.0, key_secret=b"test-ca").public_key != CA.public_key


def test_master_identity():
    master = CA.identity()
    assert (master.node_id, master.role, master.cert.not_after) == ("master", "master", FOREVER)
    Verifier(CA.public_key).check_cert(master.cert, now=1.7e9)


def test_identity_json_round_trip_signs_the_same():
    text = HELPER.to_json()
    back = Identity.from_json(text)
    assert back.cert == HELPER.cert
    assert back.sign(b"data") == HELPER.sign(b"data")
    assert "key" not in repr(back) and json.loads(text)["key"] not in repr(back)


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"cert": {}}', '{"cert": {}, "key": "zz"}',
    '{"cert": {}, "key": "' + "0" * 63 + '"}', b"\xff\xfe",
])
def test_identity_from_damaged_json(text):
    with pytest.raises(AuthError) as e:
        Identity.from_json(text)
    assert reason(e) in ("no_credentials", "bad_certificate")


def test_identity_refuses_a_certificate_for_another_key():
    other = CA.issue("h2", "helper", 1000.0)
    d = json.loads(other.to_json())
    d["cert"] = HELPER.cert.to_dict()
    with pytest.raises(AuthError) as e:
        Identity.from_json(json.dumps(d))
    assert reason(e) == "bad_certificate"


def test_auth_error_reasons_are_closed():
    err = AuthError("replay", "h1 seq 3 seen before")
    assert err.reason == "replay" and "\n" not in str(err) and isinstance(err, ValueError)
    with pytest.raises(ValueError):
        AuthError("typo")


# --------------------------------------------------------------------------- certificates


def test_certificate_dict_round_trip():
    d = HELPER.cert.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Certificate.from_dict(d) == HELPER.cert


def test_integer_not_after_signs_like_the_float():
    d = dict(HELPER.cert.to_dict(), not_after=1000)
    cert = Certificate.from_dict(d)
    assert cert.not_after == 1000.0 and type(cert.not_after) is float
    assert cert.signed_bytes() == HELPER.cert.signed_bytes()
    Verifier(CA.public_key).check_cert(cert, NOW)


def _variants():
    good = HELPER.cert.to_dict()
    yield None
    yield []
    yield "cert"
    yield {}
    yield dict(good, extra=1)
    for key in good:
        yield {k: v for k, v in good.items() if k != key}
    for key, bad in [("node_id", ""), ("node_id", 5), ("node_id", "x" * 257), ("role", None),
                     ("public_key", good["public_key"].upper()),
                     ("public_key", good["public_key"][:-2]),
                     ("public_key", " " + good["public_key"][1:]),
                     ("public_key", good["public_key"] + "\n"),
                     ("signature", good["signature"][:-1] + "g"), ("signature", 7),
                     ("not_after", "1000"), ("not_after", True), ("not_after", float("nan")),
                     ("not_after", float("inf")), ("not_after", None)]:
        yield dict(good, **{key: bad})


@pytest.mark.parametrize("d", list(_variants()))
def test_certificate_from_junk(d):
    with pytest.raises(AuthError) as e:
        Certificate.from_dict(d)
    assert reason(e) == "bad_certificate"


_GOOD = HELPER.cert.to_dict()
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                    st.binary(max_size=4))
_hex_edit = st.builds(lambda s, i, c: s[:i] + c + s[i + 1:],
                      st.sampled_from([_GOOD["public_key"], _GOOD["signature"]]),
                      st.integers(0, 130), st.sampled_from(["", "A", "g", " ", "\n", "00", "0"]))
_junk = st.one_of(_scalar, st.lists(_scalar, max_size=3),
                  st.dictionaries(st.sampled_from(sorted(_GOOD) + ["x"]), _scalar, max_size=6))
_near = st.builds(
    lambda key, value, drop: ({k: v for k, v in _GOOD.items() if k != key} if drop
                              else dict(_GOOD, **{key: value})),
    st.sampled_from(sorted(_GOOD) + ["extra"]), st.one_of(_scalar, _hex_edit), st.booleans())


@settings(max_examples=10_000, deadline=None)
@given(st.one_of(_junk, _near))
def test_fuzz_certificate_from_dict(d):
    """Only AuthError("bad_certificate") ever escapes, and what parses round-trips."""
    try:
        cert = Certificate.from_dict(d)
    except AuthError as e:
        assert e.reason == "bad_certificate"
        return
    assert Certificate.from_dict(cert.to_dict()) == cert


# --------------------------------------------------------------------------- verifier


def test_check_cert_accepts_an_issued_certificate_until_it_expires():
    v = Verifier(CA.public_key)
    v.check_cert(HELPER.cert, NOW)
    v.check_cert(HELPER.cert, 1000.0)    # not_after is inclusive
    with pytest.raises(AuthError) as e:
        v.check_cert(HELPER.cert, 1000.001)
    assert reason(e) == "expired"


def test_certificate_from_another_ca_is_refused():
    stranger = OTHER_CA.issue("h1", "helper", 1000.0)
    with pytest.raises(AuthError) as e:
        Verifier(CA.public_key).check_cert(stranger.cert, NOW)
    assert reason(e) == "bad_certificate"


@pytest.mark.parametrize("field, value", [("role", "master"), ("node_id", "h2"),
                                          ("not_after", 1e12), ("public_key", b"\x01" * 32)])
def test_edited_certificate_is_refused(field, value):
    forged = Certificate(**dict(vars(HELPER.cert), **{field: value}))
    with pytest.raises(AuthError) as e:
        Verifier(CA.public_key).check_cert(forged, NOW)
    assert reason(e) == "bad_certificate"


def test_revoked_node_is_refused():
    v = Verifier(CA.public_key, revoked={"h2"})
    v.check_cert(HELPER.cert, NOW)
    v.revoke("h1")
    with pytest.raises(AuthError) as e:
        v.check_cert(HELPER.cert, NOW)       # even though the cache knows the certificate
    assert reason(e) == "bad_certificate" and "revoked" in str(e.value)


def test_verify_checks_signer_and_data():
    v = Verifier(CA.public_key)
    sig = HELPER.sign(b"hello")
    v.verify(HELPER.cert, b"hello", sig, NOW)
    other = CA.issue("h2", "helper", 1000.0)
    for cert, data, s in [(HELPER.cert, b"hellO", sig), (other.cert, b"hello", sig),
                          (HELPER.cert, b"hello", sig[:-1]), (HELPER.cert, b"hello", b"")]:
        with pytest.raises(AuthError) as e:
            v.verify(cert, data, s, NOW)
        assert reason(e) == "bad_signature"
    with pytest.raises(AuthError) as e:
        v.verify(HELPER.cert, b"hello", sig, 2000.0)
    assert reason(e) == "expired"


def test_verify_ca():
    v = Verifier(CA.public_key)
    v.verify_ca(b"manifest", CA.sign(b"manifest"))
    for data, s in [(b"manifesT", CA.sign(b"manifest")), (b"manifest", HELPER.sign(b"manifest")),
                    (b"manifest", OTHER_CA.sign(b"manifest"))]:
        with pytest.raises(AuthError) as e:
            v.verify_ca(data, s)
        assert reason(e) == "bad_signature"


class _CountingKey:
    """Wraps the CA public key to count certificate verifications."""

    def __init__(self, key):
        self.key, self.calls = key, 0

    def verify(self, sig, data):
        self.calls += 1
        return self.key.verify(sig, data)


def test_certificate_verification_is_cached_and_bounded():
    v = Verifier(CA.public_key, cache_size=2)
    v._ca = spy = _CountingKey(v._ca)
    for _ in range(5):
        v.verify(HELPER.cert, b"m", HELPER.sign(b"m"), NOW)
    assert spy.calls == 1
    others = [CA.issue(f"h{i}", "helper", 1000.0) for i in range(2, 5)]
    for ident in others:
        v.check_cert(ident.cert, NOW)
    assert len(v._cache) == 2 and spy.calls == 4
    v.check_cert(HELPER.cert, NOW)          # evicted: verified again
    assert spy.calls == 5
    forged = Certificate(**dict(vars(HELPER.cert), role="master"))
    for _ in range(3):
        with pytest.raises(AuthError):
            v.check_cert(forged, NOW)
    assert forged not in v._cache and spy.calls == 8


def test_verifier_rejects_a_bad_ca_key():
    with pytest.raises(ValueError):
        Verifier(b"short")


# --------------------------------------------------------------------------- replay guard


def test_replay_of_the_same_seq_is_refused():
    g = ReplayGuard()
    g.check("h1", 7, NOW, NOW)
    g.check("h2", 7, NOW, NOW)               # per sender
    with pytest.raises(AuthError) as e:
        g.check("h1", 7, NOW, NOW)
    assert reason(e) == "replay"


def test_out_of_order_within_the_window_is_accepted_once():
    g = ReplayGuard(width=8)
    for seq in (10, 14, 12, 11, 13, 7):
        g.check("h1", seq, NOW, NOW)
    for seq in (10, 14, 12, 11, 13, 7):
        with pytest.raises(AuthError):
            g.check("h1", seq, NOW, NOW)
    g.check("h1", 8, NOW, NOW)               # 14 - 8 = 6 < width: still in the window
    with pytest.raises(AuthError) as e:
        g.check("h1", 6, NOW, NOW)           # 14 - 6 = 8: behind the window
    assert reason(e) == "replay" and "window" in str(e.value)
    g.check("h1", 1000, NOW, NOW)            # a jump past the width clears the bitmap
    g.check("h1", 999, NOW, NOW)
    with pytest.raises(AuthError):
        g.check("h1", 14, NOW, NOW)


@pytest.mark.parametrize("ts", [NOW - 30.001, NOW + 30.001, float("nan"), float("inf")])
def test_stale_timestamp(ts):
    g = ReplayGuard(window_s=30.0)
    with pytest.raises(AuthError) as e:
        g.check("h1", 1, ts, NOW)
    assert reason(e) == "stale_timestamp"
    assert len(g) == 0                       # a refused message leaves no state
    g.check("h1", 1, NOW - 30.0, NOW)        # the window is inclusive


def test_sender_memory_is_bounded_and_eviction_lets_no_replay_through():
    g = ReplayGuard(max_senders=3)
    for i in range(10):
        g.check(f"n{i}", 1, NOW + i * 0.1, NOW + i * 0.1)
        assert len(g) <= 3
    assert g.evicted == 7
    with pytest.raises(AuthError) as e:       # n0's state is gone, but its replay is refused
        g.check("n0", 1, NOW, NOW + 1.0)
    assert reason(e) == "replay"
    g.check("n0", 2, NOW + 1.0, NOW + 1.0)   # a fresh message from n0 is fine


def test_expire_forgets_senders_only_once_their_messages_are_stale():
    g = ReplayGuard(window_s=30.0)
    g.check("old", 1, 100.0, 100.0)
    g.check("new", 1, 125.0, 125.0)
    assert g.expire(now=129.0) == 0
    assert g.expire(now=131.0) == 1 and len(g) == 1
    with pytest.raises(AuthError) as e:       # 'old' forgotten, its message is stale anyway
        g.check("old", 1, 100.0, 131.0)
    assert reason(e) == "stale_timestamp"


@pytest.mark.parametrize("kwargs", [{"window_s": 0}, {"window_s": float("nan")},
                                    {"width": 0}, {"max_senders": 0}])
def test_replay_guard_arguments(kwargs):
    with pytest.raises(ValueError):
        ReplayGuard(**kwargs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40)), max_size=120),
       st.integers(1, 16))
def test_replay_guard_matches_a_model(ops, width):
    """Accepted iff never seen and above (newest seen - width): exactly the spec."""
    g = ReplayGuard(width=width)
    seen: dict[str, set[int]] = {}
    for sender, seq in ops:
        mine = seen.setdefault(sender, set())
        expect = seq not in mine and (not mine or seq > max(mine) - width)
        try:
            g.check(sender, seq, NOW, NOW)
            accepted = True
        except AuthError as e:
            assert e.reason == "replay"
            accepted = False
        assert accepted == expect
        if accepted:
            mine.add(seq)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 20), st.integers(-1, 30)),
                max_size=150),
       st.integers(1, 4))
def test_replay_guard_never_accepts_a_message_twice_under_eviction(ops, max_senders):
    """A replay repeats sender, seq and timestamp (all signed).  Even when the sender's
    state was evicted, no message is accepted twice."""
    g = ReplayGuard(width=8, max_senders=max_senders)
    sent: list[tuple[str, int, float]] = []
    accepted = set()
    for step, (sender, seq, replay) in enumerate(ops):
        now = NOW + step * 0.01
        msg = (f"n{sender}", seq, now)
        if 0 <= replay < len(sent):
            msg = sent[replay]                # an attacker re-sends a message seen before
        else:
            sent.append(msg)
        try:
            g.check(*msg, now)
        except AuthError as e:
            assert e.reason == "replay"
            continue
        assert msg not in accepted
        accepted.add(msg)
        assert len(g) <= max_senders


def test_module_names_its_reasons():
    assert set(sec.REASONS) == {"no_credentials", "bad_certificate", "expired", "bad_signature",
                                "replay", "stale_timestamp", "unknown_peer", "wrong_role",
                                "wrong_recipient"}
