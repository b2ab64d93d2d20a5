"""Catalogue, synthetic segments, signed-manifest payloads and the DASH MPD."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.content import (
    MPD_NS,
    Catalogue,
    CatalogueConfig,
    ContentError,
    Manifest,
    ManifestError,
    Video,
    build_catalogue,
    build_manifest,
    iso_datetime,
    render_mpd,
    segment_bytes,
    segment_url,
    sha256_hex,
)

NS = {"d": MPD_NS}


def vod(duration=5.0, segment=2.0, bitrate=400, vid="vod-0000"):
    return Video(vid, "vod", duration, bitrate, segment)


# -- Video --------------------------------------------------------------------------------
def test_segments_cover_the_video_and_only_the_last_is_short():
    v = vod(duration=5.0, segment=2.0, bitrate=400)
    assert v.n_segments == 3
    assert [v.segment_duration(i) for i in range(3)] == [2.0, 2.0, 1.0]
    assert [v.segment_size(i) for i in range(3)] == [100_000, 100_000, 50_000]


def test_default_video_has_sixty_full_segments():
    v = build_catalogue(CatalogueConfig())["vod-0000"]
    assert v.n_segments == 60
    assert {v.segment_size(i) for i in range(60)} == {75_000}  # 300 kbit/s x 2 s


def test_segment_count_forgives_float_noise():
    assert vod(duration=1.1, segment=0.1).n_segments == 11   # 1.1 / 0.1 = 11.000000000000002
    assert vod(duration=0.7, segment=0.1).n_segments == 7    # 0.7 / 0.1 = 6.999999999999999
    assert vod(duration=2.5, segment=2.0).n_segments == 2
    assert vod(duration=1.0, segment=2.0).n_segments == 1


@pytest.mark.parametrize("index", [-1, 3, 100, 1.0, True, "0"])
def test_segment_index_outside_the_video_is_rejected(index):
    v = vod()
    with pytest.raises(ValueError, match="segment index"):
        v.segment_size(index)
    with pytest.raises(IndexError):
        v.segment_duration(index)


@settings(max_examples=300, deadline=None)
@given(duration=st.floats(0.01, 10_000), segment=st.floats(0.01, 100),
       bitrate=st.integers(1, 50_000))
def test_segment_durations_and_sizes_add_up(duration, segment, bitrate):
    v = vod(duration=duration, segment=segment, bitrate=bitrate)
    n = v.n_segments
    assert n == max(1, math.ceil(duration / segment - 1e-9 * max(1.0, duration / segment)))
    durs = [v.segment_duration(i) for i in range(n)] if n < 2000 else [
        v.segment_duration(0), v.segment_duration(n - 1)]
    assert all(d == segment for d in durs[:-1])
    assert 0 < durs[-1] <= segment
    assert math.isclose((n - 1) * segment + durs[-1], duration, rel_tol=1e-9, abs_tol=1e-9)
    assert v.segment_size(n - 1) <= v.segment_size(0)
    if n > 1:
        assert v.segment_size(0) == max(1, round(bitrate * 125 * segment))


def test_segment_at_maps_playhead_to_index():
    v = vod(duration=5.0, segment=2.0)
    assert [v.segment_at(t) for t in (0, 1.99, 2.0, 4.5, 5.0, 99, -3)] == [0, 0, 1, 2, 2, 2, 0]


@pytest.mark.parametrize("kwargs, field", [
    ({"id": "bad id"}, "video id"), ({"id": ""}, "video id"), ({"id": "a/b"}, "video id"),
    ({"kind": "film"}, "kind"), ({"duration_s": 0}, "duration_s"),
    ({"duration_s": float("nan")}, "duration_s"), ({"segment_s": -2.0}, "segment_s"),
    ({"bitrate_kbps": 0}, "bitrate_kbps"), ({"bitrate_kbps": 400.0}, "bitrate_kbps"),
    ({"bitrate_kbps": True}, "bitrate_kbps"),
])
def test_bad_video_fields_are_named(kwargs, field):
    args = {"id": "vod-0001", "kind": "vod", "duration_s": 10.0, "bitrate_kbps": 400,
            "segment_s": 2.0, **kwargs}
    with pytest.raises(ContentError, match=field):
        Video(**args)


# -- Catalogue ----------------------------------------------------------------------------
def test_default_catalogue_ids_kinds_and_order():
    cat = build_catalogue(CatalogueConfig())
    assert len(cat) == 41
    assert cat.ids()[:2] == ["vod-0000", "vod-0001"] and cat.ids()[-1] == "live-00"
    assert cat.ids("vod") == [f"vod-{i:04d}" for i in range(40)]
    assert cat.ids("live") == ["live-00"]
    assert cat["live-00"].kind == "live" and cat["live-00"].duration_s == 600.0
    assert cat["vod-0039"].duration_s == 120.0 and cat["vod-0039"].bitrate_kbps == 300
    assert [v.id for v in cat] == cat.ids()
    assert "vod-0003" in cat and "vod-0040" not in cat and ["x"] not in cat


def test_catalogue_lookup_errors_name_the_video():
    cat = build_catalogue(CatalogueConfig(videos=2, live_channels=3))
    assert cat.ids("live") == ["live-00", "live-01", "live-02"]
    with pytest.raises(KeyError, match="vod-0002"):
        cat["vod-0002"]
    assert cat.get("vod-0002") is None and cat.get("vod-0001") is cat["vod-0001"]
    with pytest.raises(ValueError, match="kind"):
        cat.ids("movie")


def test_catalogue_rejects_duplicates_and_non_videos():
    with pytest.raises(ContentError, match="duplicate video id 'vod-0000'"):
        Catalogue([vod(), vod()])
    with pytest.raises(ContentError, match="not a Video"):
        Catalogue(["vod-0000"])


def test_catalogue_of_only_live_channels():
    cat = build_catalogue(CatalogueConfig(videos=0, live_channels=1))
    assert cat.ids() == ["live-00"] and cat.ids("vod") == []


@pytest.mark.parametrize("kwargs, field", [
    ({"videos": -1}, "videos"), ({"videos": 1.0}, "videos"), ({"live_channels": -2},
                                                               "live_channels"),
    ({"duration_s": 0}, "duration_s"), ({"live_duration_s": -1}, "live_duration_s"),
    ({"segment_s": float("inf")}, "segment_s"), ({"bitrate_kbps": 0}, "bitrate_kbps"),
    ({"videos": 0, "live_channels": 0}, "at least one"),
])
def test_bad_catalogue_config_is_named(kwargs, field):
    with pytest.raises(ContentError, match=field):
        CatalogueConfig(**kwargs)


# -- segment bytes --------------------------------------------------------------------------
def test_segment_bytes_are_deterministic_and_sized():
    v = vod()
    a = segment_bytes(7, v, 0, 1)
    assert a == segment_bytes(7, v, 0, 1)
    assert len(a) == 100_000 and len(segment_bytes(7, v, 2, 1)) == 50_000
    others = [segment_bytes(7, v, 0, 2), segment_bytes(8, v, 0, 1), segment_bytes(7, v, 1, 1),
              segment_bytes(7, vod(vid="vod-0001"), 0, 1)]
    for b in others:
        assert b != a and b[:64] != a[:64]
    # looks random: every byte value shows up, no long constant runs
    assert len(set(a)) == 256


def test_segment_bytes_reject_bad_arguments():
    v = vod()
    with pytest.raises(ValueError, match="version"):
        segment_bytes(1, v, 0, -1)
    with pytest.raises(ValueError, match="seed"):
        segment_bytes("1", v, 0, 1)
    with pytest.raises(IndexError):
        segment_bytes(1, v, 3, 1)


def test_large_segments_have_their_size_and_differ():
    # their generation rate is measured by benchmarks/delivery_core.py, not asserted here
    v = vod(duration=200.0, segment=2.0, bitrate=4000)   # 1 MB segments
    segs = [segment_bytes(1, v, i, 1) for i in range(3)]
    assert [len(x) for x in segs] == [1_000_000] * 3
    assert len(set(segs)) == 3


# -- manifests ------------------------------------------------------------------------------
def test_manifest_lists_every_segment_and_checks_digests():
    v = vod()
    m = build_manifest(3, v, version=2)
    assert (m.video_id, m.kind, m.version, m.segment_s, m.bitrate_kbps) == (
        "vod-0000", "vod", 2, 2.0, 400)
    assert m.sizes == (100_000, 100_000, 50_000) and m.n_segments == 3
    for i in range(3):
        data = segment_bytes(3, v, i, 2)
        assert m.digests[i] == sha256_hex(data)
        assert m.digest_ok(i, data)
        assert m.digest_ok(i, bytearray(data))
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 1
        assert not m.digest_ok(i, bytes(flipped))
        assert not m.digest_ok(i, data[:-1])
    assert not m.digest_ok(0, segment_bytes(3, v, 0, 1))   # old version
    assert not m.digest_ok(1, segment_bytes(3, v, 0, 2))   # wrong index
    assert not m.digest_ok(3, b"") and not m.digest_ok(-1, b"") and not m.digest_ok(0, "x")
    assert math.isclose(m.duration_s, 5.0) and m.segment_duration(2) == 1.0


def test_manifest_round_trips_through_json_with_identical_signed_bytes():
    m = build_manifest(1, build_catalogue(CatalogueConfig(videos=1))["live-00"], version=4)
    wire = json.loads(json.dumps(m.to_dict()))
    back = Manifest.from_dict(wire)
    assert back == m and back.canonical_bytes() == m.canonical_bytes()
    assert hash(back) == hash(m)


def test_canonical_bytes_are_sorted_compact_json():
    m = build_manifest(1, vod(), version=1)
    raw = m.canonical_bytes()
    assert b" " not in raw and raw.startswith(b'{"bitrate_kbps":400,"digests":["')
    parsed = json.loads(raw)
    assert list(parsed) == sorted(parsed) and parsed == m.to_dict()
    # an integer segment_s (as another JSON encoder might send) signs the same bytes
    d = m.to_dict()
    d["segment_s"] = 2
    assert Manifest.from_dict(d).canonical_bytes() == raw
    assert build_manifest(1, vod(), version=2).canonical_bytes() != raw


_VALID = build_manifest(1, vod(), version=1).to_dict()


def _valid_dict():
    return {k: list(v) if isinstance(v, list) else v for k, v in _VALID.items()}


@pytest.mark.parametrize("field, value", [
    ("video_id", ""), ("video_id", 5), ("video_id", "a b"), ("kind", "film"), ("kind", None),
    ("version", -1), ("version", 1.0), ("version", True), ("version", 2**63),
    ("segment_s", 0), ("segment_s", "2"), ("segment_s", float("nan")), ("segment_s", 10**400),
    ("bitrate_kbps", 0), ("bitrate_kbps", 1.5), ("sizes", []), ("sizes", "abc"),
    ("sizes", [1, 2]), ("sizes", [1, 2, -3]), ("sizes", [1, 2, 3.0]), ("digests", ["0" * 64]),
    ("digests", ["0" * 64, "0" * 64, "G" * 64]), ("digests", ["0" * 64, "0" * 64, "0" * 63]),
    ("digests", ["0" * 64, "0" * 64, 7]), ("digests", {"a": 1}),
])
def test_manifest_from_dict_names_the_bad_field(field, value):
    d = _valid_dict()
    d[field] = value
    with pytest.raises(ManifestError, match=field):
        Manifest.from_dict(d)


def test_manifest_from_dict_rejects_missing_and_unknown_fields():
    d = _valid_dict()
    del d["digests"]
    with pytest.raises(ManifestError, match="missing field 'digests'"):
        Manifest.from_dict(d)
    with pytest.raises(ManifestError, match="unknown field 'extra'"):
        Manifest.from_dict({**_valid_dict(), "extra": 1})
    for junk in (None, [], "manifest", 3):
        with pytest.raises(ManifestError):
            Manifest.from_dict(junk)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)
_FIELDS = ["video_id", "kind", "version", "segment_s", "bitrate_kbps", "sizes", "digests"]


@settings(max_examples=300, deadline=None)
@given(base=st.booleans(), changes=st.dictionaries(
    st.sampled_from([*_FIELDS, "other"]), _json | st.sampled_from([[1], ["0" * 64]]),
    max_size=3), drop=st.lists(st.sampled_from(_FIELDS), max_size=2))
def test_fuzz_manifest_from_dict_raises_only_manifest_error(base, changes, drop):
    d = _valid_dict() if base else {}
    d.update(changes)
    for k in drop:
        d.pop(k, None)
    _accept_or_manifest_error(d)


def _accept_or_manifest_error(d):
    try:
        m = Manifest.from_dict(d)
    except ManifestError:
        return False
    assert Manifest.from_dict(json.loads(m.canonical_bytes())) == m
    return True


def _junk(rng, depth=0):
    """A random JSON-ish value, biased towards near misses of the real fields."""
    makers = [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-2**70, 2**70),
        lambda: rng.randint(-3, 3), lambda: 10**400, lambda: "0" * 64,
        lambda: rng.choice([0.0, -1.5, 2.0, float("nan"), float("inf"), 1e308, 5e-324]),
        lambda: "".join(rng.choice("0123456789abcdefABC-_ /") for _ in range(rng.choice([0, 64]))),
        lambda: rng.choice(["vod", "live", "vod-0000", "x" * 300, "\x00"]),
    ]
    if depth < 2:
        makers += [
            lambda: [_junk(rng, depth + 1) for _ in range(rng.randrange(4))],
            lambda: {str(_junk(rng, 2))[:8]: _junk(rng, depth + 1) for _ in range(2)},
            lambda: ("0" * 64,) * rng.randrange(4),
        ]
    return rng.choice(makers)()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_fuzz_manifest_from_dict_with_random_mutations(seed):
    """10,000 mutations of a valid manifest dict per run: only ManifestError escapes."""
    import random

    rng = random.Random(seed)
    accepted = 0
    for _ in range(500):
        d = _valid_dict()
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            field = rng.choice(_FIELDS)
            if op == 0:
                d[field] = _junk(rng)
            elif op == 1:
                d.pop(field, None)
            elif op == 2:
                d[rng.choice(["extra", field.upper(), ""])] = _junk(rng)
            elif isinstance(d.get("sizes"), list) and isinstance(d.get("digests"), list):
                target = d[rng.choice(["sizes", "digests"])]
                if target:
                    target[rng.randrange(len(target))] = _junk(rng)
        accepted += _accept_or_manifest_error(d)
    assert accepted < 500


# -- MPD ------------------------------------------------------------------------------------
def _parse(text):
    root = ET.fromstring(text.encode())
    assert root.tag == f"{{{MPD_NS}}}MPD"
    return root


def test_vod_mpd_lists_every_segment_url_and_duration():
    m = build_manifest(1, vod(duration=5.0, segment=2.0), version=3)
    root = _parse(render_mpd(m, "http://10.0.0.2:8080/"))
    assert root.get("type") == "static" and root.get("availabilityStartTime") is None
    assert root.get("mediaPresentationDuration") == "PT5.000S"
    periods = root.findall("d:Period", NS)
    assert len(periods) == 1
    (aset,) = periods[0].findall("d:AdaptationSet", NS)
    assert aset.get("mimeType") == "video/mp4"
    (rep,) = aset.findall("d:Representation", NS)
    assert rep.get("bandwidth") == "400000"
    seglist = rep.find("d:SegmentList", NS)
    assert int(seglist.get("duration")) / int(seglist.get("timescale")) == 2.0
    urls = [s.get("media") for s in seglist.findall("d:SegmentURL", NS)]
    assert urls == [f"http://10.0.0.2:8080/seg/vod-0000/{i}?v=3" for i in range(3)]
    assert urls[1] == segment_url("http://10.0.0.2:8080", "vod-0000", 1, 3)


def test_live_mpd_is_dynamic_with_availability_start():
    v = Video("live-00", "live", 600.0, 400, 2.0)
    m = build_manifest(1, v)
    start = iso_datetime(1_700_000_000)
    assert start == "2023-11-14T22:13:20.000Z"
    root = _parse(render_mpd(m, "http://h", availability_start=start))
    assert root.get("type") == "dynamic" and root.get("availabilityStartTime") == start
    assert len(root.findall(".//d:SegmentURL", NS)) == 300
    with pytest.raises(ValueError, match="availability_start"):
        render_mpd(m, "http://h")
    with pytest.raises(ValueError, match="availability_start"):
        render_mpd(m, "http://h", availability_start="yesterday")


def test_mpd_timescale_keeps_odd_segment_lengths_exact():
    m = build_manifest(1, vod(duration=3.0, segment=1.0005, bitrate=100))
    seglist = _parse(render_mpd(m, "http://h")).find(".//d:SegmentList", NS)
    assert int(seglist.get("duration")) / int(seglist.get("timescale")) == 1.0005


def test_iso_datetime_is_utc():
    assert iso_datetime(0) == "1970-01-01T00:00:00.000Z"
    assert iso_datetime(1.25) == "1970-01-01T00:00:01.250Z"
    with pytest.raises(ValueError):
        iso_datetime(float("nan"))


def test_live_edge_is_the_newest_complete_segment():
    v = Video("live-00", "live", 20.0, 300, 2.0)   # 10 segments, produced from t = 4 s on
    assert v.live_edge(4.0, 4.0) == -1              # nothing out yet
    assert v.live_edge(5.99, 4.0) == -1
    assert v.live_edge(6.0, 4.0) == 0               # segment 0 complete at 4 + 2
    assert v.live_edge(11.0, 4.0) == 2
    assert v.live_edge(1000.0, 4.0) == 9            # never past the channel's end
