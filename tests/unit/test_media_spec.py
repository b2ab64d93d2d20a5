"""Real media, the pure part: the spec, its cache key, the ffmpeg command, the MPD read back."""

from __future__ import annotations

import pytest

from testbed.core.media import (
    LADDER,
    MediaError,
    MediaSpec,
    Rendition,
    encode_args,
    read_mpd,
)

SPEC = MediaSpec("vod-0001", 1, 60.0, 2.0)


def test_the_key_names_everything_the_encoding_depends_on():
    assert SPEC.key() == MediaSpec("vod-0001", 1, 60.0, 2.0).key()
    others = [MediaSpec("vod-0002", 1, 60.0, 2.0), MediaSpec("vod-0001", 2, 60.0, 2.0),
              MediaSpec("vod-0001", 1, 30.0, 2.0), MediaSpec("vod-0001", 1, 60.0, 4.0),
              MediaSpec("vod-0001", 1, 60.0, 2.0, renditions=LADDER[:2])]
    assert len({SPEC.key(), *(o.key() for o in others)}) == 1 + len(others)


def test_tones_and_titles_tell_videos_and_versions_apart():
    assert 300 <= SPEC.tone_hz() <= 1100 and SPEC.tone_hz() % 10 == 0
    tones = {MediaSpec(f"vod-{i:04d}", 1, 10.0, 2.0).tone_hz() for i in range(40)}
    assert len(tones) > 25
    assert SPEC.title() == "vod-0001 v1"
    assert SPEC.n_segments == 30 and MediaSpec("x", 1, 61.0, 2.0).n_segments == 31


def test_the_command_encodes_every_rendition_with_a_key_frame_at_every_segment():
    args = encode_args(SPEC, "/tmp/out/manifest.mpd", font="/f.ttf")
    joined = " ".join(args)
    assert args[0] == "ffmpeg" and args[-1] == "/tmp/out/manifest.mpd"
    assert args.count("-map") == len(LADDER) + 1       # every rendition, and the audio
    for i, r in enumerate(LADDER):
        assert args[args.index(f"-b:v:{i}") + 1] == f"{r.kbps}k"
        assert f"scale={r.width}:{r.height}" in joined
    assert args[args.index("-g") + 1] == "50" == args[args.index("-keyint_min") + 1]
    assert args[args.index("-sc_threshold") + 1] == "0"
    assert args[args.index("-seg_duration") + 1] == "2"
    assert "drawtext=fontfile=/f.ttf" in joined and "vod-0001 v1" in joined
    assert f"frequency={SPEC.tone_hz()}" in joined
    assert "drawtext" not in " ".join(encode_args(SPEC, "/tmp/m.mpd"))


@pytest.mark.parametrize(("make", "says"), [
    (lambda: MediaSpec("vod 1", 1, 10.0, 2.0), "video id 'vod 1'"),
    (lambda: MediaSpec("v", -1, 10.0, 2.0), "version -1"),
    (lambda: MediaSpec("v", 1, 0.0, 2.0), "duration_s 0.0"),
    (lambda: MediaSpec("v", 1, 10.0, 0.03), "not a whole number of frames"),
    (lambda: MediaSpec("v", 1, 10.0, 2.0, renditions=()), "no rendition"),
    (lambda: MediaSpec("v", 1, 10.0, 2.0, renditions=(LADDER[1], LADDER[0])), "must rise"),
    (lambda: Rendition(300, 425, 240), "even sizes"),
    (lambda: Rendition(0, 426, 240), "kbps: 0"),
    (lambda: MediaSpec("v", 1, 10.0, 2.0, renditions=(Rendition(300, 1920, 1080),)),
     "above the source picture"),
])
def test_bad_specs_get_one_line(make, says):
    with pytest.raises(MediaError) as err:
        make()
    assert says in str(err.value) and "\n" not in str(err.value)


MPD = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT6S">
 <Period id="0">
  <AdaptationSet id="0" contentType="video">
   <Representation id="0" mimeType="video/mp4" codecs="avc1.4d4015" bandwidth="300000"
       width="426" height="240">
    <SegmentTemplate timescale="1000000" duration="2000000"
        initialization="init-$RepresentationID$.m4s"
        media="seg-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
   </Representation>
  </AdaptationSet>
  <AdaptationSet id="1" contentType="audio">
   <Representation id="3" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000">
    <SegmentTemplate timescale="48000" duration="96000" initialization="a-$RepresentationID$.m4s"
        media="a-$RepresentationID$-$Number$.m4s" startNumber="0"/>
   </Representation>
  </AdaptationSet>
 </Period>
</MPD>"""


def test_the_mpd_is_read_back_into_tracks_and_file_names():
    video, audio = read_mpd(MPD)
    assert (video.rep, video.content, video.bandwidth, video.width, video.height) == (
        "0", "video", 300_000, 426, 240)
    assert video.init == "init-0.m4s" and video.segment_s == 2.0
    assert video.segment_name(1) == "seg-0-00001.m4s"
    assert (audio.content, audio.width, audio.start_number, audio.segment_s) == (
        "audio", None, 0, 2.0)
    assert audio.segment_name(7) == "a-3-7.m4s" and audio.init == "a-3.m4s"


@pytest.mark.parametrize(("text", "says"), [
    ("<MPD", "not XML"),
    ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period/></MPD>', "no representation"),
    ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet>'
     '<Representation id="0"/></AdaptationSet></Period></MPD>', "without an id or a"),
])
def test_a_bad_mpd_gets_one_line(text, says):
    with pytest.raises(MediaError) as err:
        read_mpd(text)
    assert says in str(err.value)
