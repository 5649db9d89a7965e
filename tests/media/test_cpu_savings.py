"""What the plugin no longer spends CPU on, and that nothing else changed (D56, D57, D63):
an SFU subscription's answer without abs-send-time (no bandwidth estimate per received
packet), aiortc's audio level of a sent frame computed in C with the same value, the
test pattern drawn over the previous frame with the same pixels, and the microphone
encoded in mono Opus that decodes to the same tone."""

from __future__ import annotations

import itertools
import random
import threading

import pytest
from aiortc import rtp
from av import AudioFrame, VideoFrame

from kefu.media import MediaSettings, PatternPainter
from kefu.media.audio_level import audio_level_dbov, install
from kefu.media.pattern import COLOURS
from kefu.media.signal_checks import ABS_SEND_TIME, without_extension
from tests.media.conftest import sending_pair

ORIGINAL_LEVEL = rtp.compute_audio_level_dbov  # aiortc's, before install() (the test imports it first)

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    f"a=extmap:3 {ABS_SEND_TIME}\r\n"
    f"a=extmap:4/recvonly {ABS_SEND_TIME}\r\n"
    "a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
)


def test_an_extension_is_taken_out_of_an_sdp_and_nothing_else() -> None:
    out = without_extension(OFFER, ABS_SEND_TIME)
    assert ABS_SEND_TIME not in out
    assert out == OFFER.replace(f"a=extmap:3 {ABS_SEND_TIME}\r\n", "").replace(
        f"a=extmap:4/recvonly {ABS_SEND_TIME}\r\n", ""
    )
    assert without_extension(out, ABS_SEND_TIME) == out  # none left: unchanged


@pytest.mark.media
@pytest.mark.parametrize("estimate", [False, True])
async def test_a_subscription_answers_without_abs_send_time_and_still_receives(
    settings: MediaSettings, estimate: bool
) -> None:
    async with sending_pair(settings, estimate_bandwidth=estimate) as b:
        frame = await b.next_frame("a", "camera")
        assert (frame.width, frame.height) == (320, 240)
        assert (ABS_SEND_TIME in b.pc.localDescription.sdp) is estimate  # True: the former way
        assert (await b.stats()).packets_received["video"] > 0


def _frame(samples: list[int]) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="mono", samples=len(samples))
    frame.planes[0].update(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))
    frame.sample_rate = 48000
    return frame


def test_the_audio_level_is_aiortcs_to_the_dbov() -> None:
    rnd = random.Random(7)
    frames = [
        _frame([0] * 960),  # silence: -127
        _frame([32767, -32768] * 480),  # full scale: 0
        _frame([1] * 960),  # just above silence
        *(_frame([rnd.randint(-(2**e), 2**e - 1) for _ in range(960)]) for e in range(1, 16)),
    ]
    assert [audio_level_dbov(f) for f in frames] == [ORIGINAL_LEVEL(f) for f in frames]
    assert audio_level_dbov(frames[0]) == -127 and audio_level_dbov(frames[1]) == 0
    install()
    assert rtp.compute_audio_level_dbov is audio_level_dbov  # what aiortc's senders call


@pytest.mark.parametrize(("width", "height", "style"), [(320, 240, "camera"), (1280, 720, "screen")])
def test_the_pattern_drawn_over_the_last_frame_is_the_pattern_drawn_afresh(
    width: int, height: int, style: str
) -> None:
    painter = PatternPainter(width, height, COLOURS[1], style)  # type: ignore[arg-type]
    rnd = random.Random(3)
    counters = [*range(120), 999, 1000, 99, 100000, 7, 2**20 + 5, *(rnd.randrange(10**7) for _ in range(20))]
    for n in counters:
        fresh = PatternPainter(width, height, COLOURS[1], style)  # type: ignore[arg-type]
        assert [bytes(p) for p in painter.paint(n).planes] == [bytes(p) for p in fresh.paint(n).planes], n
    with pytest.raises(ValueError):
        painter.paint(-1)


def test_the_microphone_is_encoded_mono_and_decodes_to_the_same_tone() -> None:
    from aiortc import rtcrtpsender
    from aiortc.codecs import get_encoder as aiortcs_get_encoder
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from kefu.media.opus import BIT_RATE, MonoOpusEncoder
    from kefu.media.opus import install as install_opus
    from kefu.media.pattern import tone_of
    from kefu.media.tracks import ToneAudioTrack

    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    install_opus()
    install_opus()  # idempotent: still one wrapper around aiortc's own
    senders_get_encoder = getattr(rtcrtpsender, "get_encoder")  # noqa: B009 (not exported)
    assert isinstance(senders_get_encoder(opus), MonoOpusEncoder)
    assert type(senders_get_encoder(vp8)) is type(aiortcs_get_encoder(vp8))
    assert type(aiortcs_get_encoder(opus)) is OpusEncoder  # aiortc's own table is untouched

    tone = ToneAudioTrack(450)
    pcm = tone._pcm  # one frame's samples: whole periods
    mono, stereo = MonoOpusEncoder(), OpusEncoder()
    sizes: dict[str, int] = {"mono": 0, "stereo": 0}
    decoded: list[AudioFrame] = []
    decoder = OpusDecoder()
    for i in range(50):  # one second
        frame = _frame([int.from_bytes(pcm[k : k + 2], "little", signed=True) for k in range(0, len(pcm), 2)])
        frame.pts = i * 960
        for name, encoder in (("mono", mono), ("stereo", stereo)):
            payloads, timestamp = encoder.encode(frame)
            sizes[name] += sum(len(p) for p in payloads)
            if name == "mono":
                for p in payloads:
                    assert p[0] & 0x04 == 0, "the TOC byte says stereo"  # RFC 6716 §3.1: s bit
                    decoded += [
                        f
                        for f in decoder.decode(JitterFrame(data=p, timestamp=timestamp))
                        if isinstance(f, AudioFrame)
                    ]
    assert decoded and decoded[0].layout.name == "stereo"  # aiortc's receivers decode it as ever
    assert abs(tone_of(decoded[10:]) - 450) < 10
    assert sizes["mono"] < sizes["stereo"]
    assert sizes["mono"] * 8 <= BIT_RATE * 1.25  # one second at about the set rate


@pytest.mark.media
@pytest.mark.parametrize(
    ("kinds", "video_on_loop", "on_loop"),
    [
        (("audio", "video"), True, {"audio", "video"}),  # the SFU's publisher
        (("audio", "video"), False, {"audio"}),  # a hub's peer: one encoder per member
        ((), True, set()),  # the former way
    ],
)
async def test_frames_encoded_on_the_loop_are_sent_as_before(
    settings: MediaSettings,
    kinds: tuple[str, ...],
    video_on_loop: bool,
    on_loop: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D64: audio, and video where the peer says so, encoded on the event loop (the others in
    aiortc's thread pool, the former way); either way the microphone's packets are mono, carry
    the frame's audio level and decode to the tone, and the camera's frames arrive."""
    import threading
    from dataclasses import replace

    from aiortc import RTCRtpReceiver
    from aiortc.codecs.vpx import Vp8Encoder

    from kefu.media.opus import MonoOpusEncoder
    from kefu.media.pattern import read_counter, tone_for, tone_of
    from kefu.media.tracks import ToneAudioTrack

    encoded_in: dict[str, set[int]] = {"audio": set(), "video": set()}

    def recorded(kind: str, encoder: type) -> None:
        encode = encoder.encode

        def recorded_encode(self: object, frame: object, force_keyframe: bool = False) -> object:
            encoded_in[kind].add(threading.get_ident())
            return encode(self, frame, force_keyframe)

        monkeypatch.setattr(encoder, "encode", recorded_encode)

    recorded("audio", MonoOpusEncoder)
    recorded("video", Vp8Encoder)
    received: list[object] = []
    handle = RTCRtpReceiver._handle_rtp_packet

    async def recorded_packet(self: RTCRtpReceiver, packet: object, arrival_time_ms: int) -> None:
        if self.track.kind == "audio":
            received.append(packet)
        await handle(self, packet, arrival_time_ms)  # type: ignore[arg-type]

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", recorded_packet)
    sender = {"encode_video_on_loop": video_on_loop}
    async with sending_pair(replace(settings, encode_on_loop=kinds), sender=sender) as b:
        frames = [await b.next_frame("a", "mic") for _ in range(25)]
        counters = [read_counter(await b.next_frame("a", "camera")) for _ in range(5)]  # type: ignore[arg-type]
    loop_thread = threading.get_ident()
    for kind, threads in encoded_in.items():
        assert threads, kind
        if kind in on_loop:
            assert threads == {loop_thread}, kind
        else:
            assert loop_thread not in threads, kind
    assert counters == sorted(counters) and len(set(counters)) == 5  # frames by content, in order
    tone = ToneAudioTrack(tone_for("a"))
    level = audio_level_dbov(await tone.recv())  # every frame of the tone has this level
    tone.stop()
    assert len(received) >= 25
    for packet in received:
        assert packet.extensions.audio_level == (False, -level)  # type: ignore[attr-defined]
        assert packet.payload[0] & 0x04 == 0, "the TOC byte says stereo"  # type: ignore[attr-defined]
    timestamps = [p.timestamp for p in received]  # type: ignore[attr-defined]
    assert all((later - earlier) % 2**32 == 960 for earlier, later in itertools.pairwise(timestamps))
    assert abs(tone_of(frames[5:]) - tone_for("a")) < 10


async def test_a_sender_on_the_loop_runs_the_encoder_at_once_and_sees_its_error() -> None:
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    from kefu.media.encoding import encode_on_loop

    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver(AudioStreamTrack()).sender  # never started
        assert encode_on_loop(sender) and encode_on_loop(sender)  # idempotent
        loop = sender._RTCRtpSender__loop  # type: ignore[attr-defined]
        assert loop.is_running()  # the loop's own methods
        assert await loop.run_in_executor(None, divmod, 7, 2) == (3, 1)  # at once, no thread
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, divmod, 7, 0)
        # a video frame up to 640x480 is encoded on the loop; a larger one (a screen, 720p) in the pool
        here = threading.get_ident()
        on = await loop.run_in_executor(None, lambda f: threading.get_ident(), VideoFrame(640, 480))
        off = await loop.run_in_executor(None, lambda f: threading.get_ident(), VideoFrame(1280, 720))
        assert on == here and off != here
    finally:
        await pc.close()
    assert not encode_on_loop(object())  # type: ignore[arg-type]  # an aiortc without that loop
