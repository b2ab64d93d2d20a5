"""Telemetry leaves a helper anonymised, whitelisted and bounded."""

from __future__ import annotations

import hashlib
import hmac
import math

import pytest

from testbed.core.telemetry import (
    BASE_KEYS,
    EXTRA_KEYS,
    TELEMETRY_KINDS,
    SessionGate,
    TelemetryBuffer,
    TelemetryError,
    anonymise,
    session_token,
    telemetry_record,
    token_ok,
)

SALT = b"run-salt"


def test_anonymise_is_a_keyed_truncated_hmac():
    a = anonymise("v1-3", SALT)
    assert a == hmac.new(SALT, b"pseudonym\0v1-3", hashlib.sha256).hexdigest()[:16]
    assert a != hashlib.sha256(SALT + b"v1-3").hexdigest()[:16]  # not a salted hash
    assert len(a) == 16 and int(a, 16) >= 0
    assert a == anonymise("v1-3", SALT)                 # stable: sessions can be followed
    assert a != anonymise("v1-4", SALT)
    assert a != anonymise("v1-3", b"other-key")          # unlinkable across runs
    for short in (b"", b"short"):
        with pytest.raises(TelemetryError, match="pseudonym key"):
            anonymise("v1-3", short)


def test_session_tokens_bind_the_viewer_and_the_video_under_the_key():
    t = session_token(SALT, "v1-3", "vod-0001")
    assert len(t) == 32 and t != anonymise("v1-3", SALT)[:32]
    assert token_ok(SALT, "v1-3", "vod-0001", t)
    assert not token_ok(SALT, "v1-4", "vod-0001", t)     # another viewer's session
    assert not token_ok(SALT, "v1-3", "vod-0002", t)     # another video
    assert not token_ok(b"other-key", "v1-3", "vod-0001", t)
    for bad in (None, 7, "", t[:-1], t.upper()):
        assert not token_ok(SALT, "v1-3", "vod-0001", bad)


def test_session_gate_admits_a_burst_then_the_rate():
    gate = SessionGate(rate=2.0, burst=10, max_sessions=2)
    assert gate.admit("a", 10, 0.0) and not gate.admit("a", 1, 0.0)
    assert gate.admit("b", 10, 0.0)                     # sessions are apart
    assert not gate.admit("a", 2, 0.5) and gate.admit("a", 2, 1.0)  # 2 per s
    assert not gate.admit("a", 11, 100.0)                # never more than the burst
    assert gate.admit("a", 10, 100.0)
    gate.admit("c", 1, 100.0)                           # the least recently used goes
    assert len(gate) == 2 and gate.admit("b", 10, 100.0)
    with pytest.raises(TelemetryError, match="rate"):
        SessionGate(rate=0)


def test_record_has_the_base_keys_and_no_raw_id():
    rec = telemetry_record("start", "v1-3", SALT, "vod-0001", 4.0, 12.5, "h1", startup_s=1.2)
    assert set(rec) == set(BASE_KEYS) | {"startup_s"}
    assert rec["kind"] == "start" and rec["viewer"] == anonymise("v1-3", SALT)
    assert rec["video"] == "vod-0001" and rec["helper"] == "h1"
    assert rec["playhead_s"] == 4.0 and rec["at"] == 12.5
    assert "v1-3" not in repr(rec)


@pytest.mark.parametrize("kind", TELEMETRY_KINDS)
def test_every_player_event_kind_is_accepted(kind):
    assert telemetry_record(kind, "v", SALT, "live-00", 0.0, 1.0, "h2")["kind"] == kind


def test_player_event_kinds_are_all_telemetry_kinds():
    from testbed.core.player import EVENT_KINDS

    assert set(EVENT_KINDS) <= set(TELEMETRY_KINDS)


@pytest.mark.parametrize("key", ["ip", "viewer_ip", "addr", "src_addr", "viewer", "host"])
def test_identifying_extra_keys_are_refused(key):
    with pytest.raises(TelemetryError, match="identify"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, "h1", **{key: "x"})


def test_unknown_extra_keys_are_refused():
    with pytest.raises(TelemetryError, match="not allowed"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, "h1", colour="red")


@pytest.mark.parametrize("value", ["10.0.0.7", "10.0.0.7:8080", "fe80::1", "[::1]:80", "http://10.0.0.7:8080/seg"])
def test_address_values_are_refused(value):
    with pytest.raises(TelemetryError, match="address"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, "h1", source=value)
    with pytest.raises(TelemetryError, match="address"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, value)


def test_raw_viewer_id_as_a_value_is_refused():
    with pytest.raises(TelemetryError, match="raw viewer id"):
        telemetry_record("request", "v1-3", SALT, "vod-0001", 0.0, 1.0, "h1", source="v1-3")


def test_bad_kind_and_numbers_are_refused():
    with pytest.raises(TelemetryError, match="kind"):
        telemetry_record("teleport", "v", SALT, "vod-0001", 0.0, 1.0, "h1")
    with pytest.raises(TelemetryError, match="playhead_s"):
        telemetry_record("start", "v", SALT, "vod-0001", math.nan, 1.0, "h1")
    with pytest.raises(TelemetryError, match="playhead_s"):
        telemetry_record("start", "v", SALT, "vod-0001", -1.0, 1.0, "h1")
    with pytest.raises(TelemetryError, match="latency_ms"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, "h1", latency_ms=math.inf)
    with pytest.raises(TelemetryError, match="plain value"):
        telemetry_record("request", "v", SALT, "vod-0001", 0.0, 1.0, "h1", index=[1, 2])
    assert "index" in EXTRA_KEYS


def test_buffer_is_bounded_keeps_the_newest_and_counts_drops():
    buf = TelemetryBuffer(max_items=3)
    assert all(buf.add({"n": i}) for i in range(3))
    assert buf.add({"n": 3}) is False
    assert buf.extend([{"n": 4}, {"n": 5}]) == 2
    assert len(buf) == 3 and buf.dropped == 3 and buf.added == 6
    assert buf.drain(2) == [{"n": 3}, {"n": 4}]         # oldest first
    assert buf.drain(10) == [{"n": 5}]
    assert buf.drain() == [] and len(buf) == 0


def test_a_flooding_session_evicts_only_its_own_records():
    buf = TelemetryBuffer(max_items=10)
    for i in range(3):
        buf.add({"viewer": "alice", "n": i})
        buf.add({"viewer": "bob", "n": i})
    assert buf.extend({"viewer": "mallory", "n": i} for i in range(1000)) == 996
    kept = buf.drain()
    assert [r["n"] for r in kept if r["viewer"] == "alice"] == [0, 1, 2]
    assert [r["n"] for r in kept if r["viewer"] == "bob"] == [0, 1, 2]
    assert [r["n"] for r in kept if r["viewer"] == "mallory"] == [996, 997, 998, 999]
    # drained oldest first across sessions
    assert [(r["viewer"], r["n"]) for r in kept[:6]] == [
        ("alice", 0), ("bob", 0), ("alice", 1), ("bob", 1), ("alice", 2), ("bob", 2)]
    # equal shares: the oldest record goes, as in a plain bounded queue
    buf = TelemetryBuffer(max_items=4)
    for i in range(6):
        buf.add({"viewer": f"v{i}", "n": i})
    assert [r["n"] for r in buf.drain()] == [2, 3, 4, 5]


def test_buffer_rejects_bad_arguments():
    with pytest.raises(TelemetryError, match="max_items"):
        TelemetryBuffer(0)
    with pytest.raises(TelemetryError, match="dict"):
        TelemetryBuffer().add(["not", "a", "record"])
    with pytest.raises(TelemetryError, match="drain"):
        TelemetryBuffer().drain(-1)


def test_ordinary_values_are_not_mistaken_for_addresses():
    rec = telemetry_record("request", "v1-3", SALT, "vod-0001", 6.0, 1.0, "h12",
                           source="cache_prefetch", version=2, index=3, cause="1.2.3",
                           session="s-10.5")
    assert rec["source"] == "cache_prefetch" and rec["cause"] == "1.2.3"


# ---------------------------------------------------------------- the engine's checks

from testbed.core.telemetry import MAX_BATCH, check_batch, check_record  # noqa: E402


def good(**changes):
    rec = telemetry_record("request", "v1-0", SALT, "vod-0001", 4.0, 100.0, "h1", index=2)
    rec.update(changes)
    return rec


def test_check_record_returns_a_trace_row():
    row = check_record(good(), "h1", now=100.5)
    assert row == {"at": 100.0, "helper": "h1", "viewer": anonymise("v1-0", SALT),
                   "video": "vod-0001", "kind": "request", "playhead_s": 4.0, "index": 2}
    pause = telemetry_record("pause", "v1-0", SALT, "vod-0001", 4.0, 101.0, "h1")
    assert check_record(pause, "h1", now=101.0)["index"] == -1


@pytest.mark.parametrize("change, words", [
    ({"at": 200.0}, "in the future"),
    ({"at": -5000.0}, "older than"),
    ({"at": "soon"}, "at must be a number"),
    ({"playhead_s": -1.0}, "playhead_s must be >= 0"),
    ({"kind": "explode"}, "kind 'explode'"),
    ({"viewer": "v1-0"}, "not a pseudonym"),
    ({"viewer": "10.0.0.7"}, "not a pseudonym"),
    ({"helper": "h2"}, "is not the sender 'h1'"),
    ({"index": -1}, "request index"),
    ({"index": 2.5}, "request index"),
    ({"video": ""}, "video must be non-empty"),
    ({"source": "10.0.0.9:80"}, "is an address"),
    ({"client_ip": "x"}, "'client_ip' is not allowed"),
])
def test_check_record_refuses_with_a_clear_line(change, words):
    with pytest.raises(TelemetryError, match=words) as info:
        check_record(good(**change), "h1", now=100.0)
    assert "\n" not in str(info.value)


def test_check_record_names_missing_fields_and_non_objects():
    rec = good()
    del rec["at"], rec["video"]
    with pytest.raises(TelemetryError, match="lacks video, at"):
        check_record(rec, "h1", now=100.0)
    with pytest.raises(TelemetryError, match="list, not an object"):
        check_record([1, 2], "h1", now=100.0)


def test_check_batch_keeps_the_good_records_and_refuses_huge_batches():
    rows, errors = check_batch([good(), good(at=1e9), "junk", good(index=3)], "h1", now=100.0)
    assert [r["index"] for r in rows] == [2, 3]
    assert len(errors) == 2 and errors[0].startswith("record 1: ") and "future" in errors[0]
    rows, errors = check_batch([good()] * (MAX_BATCH + 1), "h1", now=100.0)
    assert rows == [] and errors == [f"batch of {MAX_BATCH + 1} records exceeds {MAX_BATCH}"]
    assert check_batch({"events": []}, "h1", now=1.0) == ([], ["batch is a dict, not a list"])
