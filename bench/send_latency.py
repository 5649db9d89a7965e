"""Frame → wire delay of a sender, its frames encoded in aiortc's thread pool or on the loop (D64).

In one process, ``a`` sends its camera (640x480 at 30 fps, the plugin's default)
and microphone to ``b`` (which decodes on demand, as Janus does not decode), for
``seconds`` per variant, the variants alternated ``rounds`` times. The delay runs
from the moment the source track yields a frame to the moment the first RTP packet
of it is handed to the DTLS transport (audio: every frame, matched by the
encoder's timestamp; video: the frames matched by their RTP timestamp); also the
process's CPU. ``python -m bench.send_latency [SECONDS] [ROUNDS]``.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from dataclasses import replace
from typing import Any

__all__ = ["VARIANTS", "measure"]

#: ``MediaSettings.encode_on_loop`` of each variant (the sender is an SFU publisher's peer)
VARIANTS: dict[str, tuple[str, ...]] = {"none": (), "audio": ("audio",), "audio,video": ("audio", "video")}

_sent: list[tuple[Any, int, int, float]] = []  # (transport, payload type, RTP timestamp, time)
_encoded: dict[int, int] = {}  # the Opus encoder's timestamp → the pts of the frame it encoded


def _instrument() -> None:
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    from kefu.media.opus import MonoOpusEncoder

    send_rtp = RTCDtlsTransport._send_rtp

    async def recorded_send(self: RTCDtlsTransport, data: bytes) -> None:
        if len(data) > 12 and not 192 <= data[1] <= 223:  # RTP, not RTCP
            _sent.append((self, data[1] & 0x7F, int.from_bytes(data[4:8], "big"), time.perf_counter()))
        await send_rtp(self, data)

    encode = MonoOpusEncoder.encode

    def recorded_encode(self: MonoOpusEncoder, frame: Any, force_keyframe: bool = False) -> Any:
        payloads, timestamp = encode(self, frame, force_keyframe)
        if payloads:
            _encoded[timestamp] = frame.pts
        return payloads, timestamp

    RTCDtlsTransport._send_rtp = recorded_send  # type: ignore[method-assign]
    MonoOpusEncoder.encode = recorded_encode  # type: ignore[method-assign]


def _video_delays(produced: dict[int, float], packets: list[tuple[int, float]]) -> list[float]:
    """Each frame's first packet matched to the frame by its RTP timestamp (the pts plus an origin)."""
    if not packets:
        return []
    origins = collections.Counter((ts - pts) % 2**32 for ts, _ in packets[:20] for pts in produced)
    origin = origins.most_common(1)[0][0]
    return [1000 * (t - produced[p]) for ts, t in packets if (p := (ts - origin) % 2**32) in produced]


def _summary(delays: list[float]) -> dict[str, float]:
    xs = sorted(delays)
    if not xs:
        return {}

    def q(f: float) -> float:
        return round(xs[min(len(xs) - 1, int(f * len(xs)))], 2)

    return {"n": len(xs), "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": round(xs[-1], 2)}


async def _one(kinds: tuple[str, ...], seconds: float) -> tuple[list[float], list[float], float]:
    from kefu.media import DirectLink, MediaPeer, MediaSettings, open_source

    base = MediaSettings(video_width=640, video_height=480, fps=30, close_timeout=1.0)
    settings = replace(base, encode_on_loop=kinds)
    source = open_source(settings, "a")
    produced: dict[str, dict[int, float]] = {"audio": {}, "video": {}}
    for kind, track in (("audio", source.audio), ("video", source.video)):
        recv = track.recv

        async def stamped(recv: Any = recv, kind: str = kind) -> Any:
            frame = await recv()
            produced[kind][frame.pts] = time.perf_counter()
            return frame

        track.recv = stamped  # type: ignore[method-assign]
    a = MediaPeer(settings, local="a", remote="b", offerer=True, encode_video_on_loop=True)
    b = MediaPeer(base, local="b", remote="a", offerer=False, audio_on_demand=True, video_on_demand=True)
    a.send(source.video, "camera")
    a.send(source.audio, "mic")
    link = DirectLink(a, b)
    try:
        _sent.clear()
        _encoded.clear()
        await b.next_frame("a", "camera", within=10)
        start, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        cpu = 100 * (time.process_time() - cpu0) / seconds
        transport = a.pc.getTransceivers()[0].sender.transport
        types = {t.kind: t._codecs[0].payloadType for t in a.pc.getTransceivers()}
        mine = [(pt, ts, t) for x, pt, ts, t in _sent if x is transport]
        audio_packets = [(ts, t) for pt, ts, t in mine if pt == types["audio"]]
        origin = audio_packets[0][0]  # the encoder's timestamp 0
        audio = []
        for ts, t in audio_packets:
            pts = _encoded.get((ts - origin) % 2**32)
            if t >= start and pts is not None and pts in produced["audio"]:
                audio.append(1000 * (t - produced["audio"][pts]))
        video: list[tuple[int, float]] = []
        for pt, ts, t in mine:
            if pt == types["video"] and t >= start and (not video or video[-1][0] != ts):
                video.append((ts, t))
        return audio, _video_delays(produced["video"], video), cpu
    finally:
        await link.close()
        await a.close()
        await b.close()
        source.stop()


async def measure(seconds: float = 8.0, rounds: int = 2) -> dict[str, Any]:
    _instrument()
    delays: dict[str, tuple[list[float], list[float], list[float]]] = {k: ([], [], []) for k in VARIANTS}
    for _ in range(rounds):
        for name, kinds in VARIANTS.items():
            audio, video, cpu = await _one(kinds, seconds)
            delays[name][0].extend(audio)
            delays[name][1].extend(video)
            delays[name][2].append(round(cpu, 1))
    return {
        name: {"audio": _summary(a), "video": _summary(v), "process_cpu_pct": c}
        for name, (a, v, c) in delays.items()
    }


if __name__ == "__main__":
    import json

    args = [float(x) for x in sys.argv[1:3]]
    print(json.dumps(asyncio.run(measure(*(args[:1] or [8.0]), *(int(x) for x in args[1:2]))), indent=1))
