"""What the media layer is told: one frozen :class:`MediaSettings`.

Every timeout and size is here so that tests run with milliseconds and small
frames, and so the plugin and the visitor read the same options from their
configuration. The defaults are the embedded default of DESIGN §6: host
candidates on 127.0.0.1 only, no STUN or TURN server, a synthetic pattern
when there is no device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import MediaError

__all__ = [
    "AUDIO_INPUTS",
    "IceServer",
    "MediaSettings",
    "SourceSpec",
    "parse_source",
]

#: ``audio_input`` prefixes: PyAV input formats for a microphone.
AUDIO_INPUTS = ("alsa", "pulse", "oss")

_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s]+$")


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server, as in the WebRTC ``RTCIceServer`` dictionary.

    ``urls`` are ``stun:host:port`` / ``turn:host:port?transport=udp|tcp`` /
    ``turns:host:port``; TURN needs ``username`` and ``credential`` (coturn's
    ``lt-cred-mech`` user, or a time-limited ``use-auth-secret`` pair).
    """

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise MediaError("an ICE server needs at least one URL")
        for url in self.urls:
            if not _URL.match(url):
                raise MediaError(f"ICE server URL {url!r}: use stun:, stuns:, turn: or turns:host:port")
            if url.startswith("turn") and (self.username is None or self.credential is None):
                raise MediaError(f"TURN server {url!r} needs a username and a credential")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where the local camera and microphone come from (see :func:`parse_source`)."""

    kind: Literal["pattern", "device", "file"]
    path: str | None = None


def parse_source(text: str) -> SourceSpec:
    """``pattern`` | ``device:<path>`` (a v4l2 camera, e.g. ``device:/dev/video0``) |
    ``file:<path>`` (any file PyAV reads, looped)."""
    if text == "pattern":
        return SourceSpec("pattern")
    kind, sep, path = text.partition(":")
    if sep and path and kind in ("device", "file"):
        if kind == "file" and not Path(path).is_file():
            raise MediaError(f"media file {path!r} does not exist; give file:<path to a video file>")
        return SourceSpec(kind, path)  # type: ignore[arg-type]
    raise MediaError(f"source {text!r}: use 'pattern', 'device:/dev/videoN' or 'file:<path>'")


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Options of the media layer. Frozen: pass a new one with :func:`dataclasses.replace`."""

    #: STUN / TURN servers. Empty by default: never a public STUN server (DESIGN §6).
    ice_servers: tuple[IceServer, ...] = ()
    #: Local addresses to offer host candidates on. ``None`` lets aioice list the
    #: machine's interfaces (it skips loopback); the embedded default is loopback only.
    host_addresses: tuple[str, ...] | None = ("127.0.0.1",)
    #: The size and rate of the video we send (sources are scaled to it).
    video_width: int = 640
    video_height: int = 480
    fps: int = 30
    #: ``pattern`` | ``device:<path>`` | ``file:<path>``.
    source: str = "pattern"
    #: Microphone for a ``device:`` source: ``alsa:<device>`` (e.g. ``alsa:default``,
    #: or ``alsa:pulse`` through PulseAudio's ALSA plugin), ``pulse:<source>`` or
    #: ``oss:<device>`` when the PyAV build has that input. ``None``: a test tone.
    audio_input: str | None = None
    #: The full resolution of a still photo from a pattern source (a device or a
    #: file gives stills at its own resolution).
    photo_width: int = 1280
    photo_height: int = 720
    #: Record each call (both directions) to WebM.
    record: bool = False
    #: Recording: a WebM cluster (and so an uploadable chunk) at least this often.
    record_chunk_seconds: float = 1.0
    #: Recording: VP8 bit rate per video stream.
    record_video_bitrate: int = 600_000
    #: Stream-offline: no video frame for longer than this is an outage (SPEC §2, v1216: 3 s).
    offline_threshold: float = 3.0
    #: How often the watchdog looks; ``None``: a tenth of the threshold.
    watchdog_interval: float | None = None
    #: ``RTCPeerConnection.close()`` can hang after the peer crashed: bound it.
    close_timeout: float = 2.0
    #: SFU mode: a subscription answers ``a=setup:passive`` and waits for Janus's DTLS
    #: handshake (False: ``active``, aiortc's default, whose early ClientHello Janus may miss:
    #: then 1 s more to the first frame; docs/decisions.md D45; kept for the benchmark).
    sfu_dtls_passive: bool = True
    #: SFU mode: a subscription decodes the audio it receives only while something asks for
    #: it (a waiter, a listener: nothing plays it in the plugin); False: every frame decoded
    #: (the former way, kept for the benchmark; docs/decisions.md D49).
    sfu_audio_on_demand: bool = True
    #: SFU mode, no window (``--headless``): a subscription decodes the video it receives only
    #: while something asks for it (a snapshot, a waiter, a listener), from a key frame it asks
    #: the publisher for; undecoded frames still feed the frame watchdog. False: every frame
    #: decoded (a window shows the tiles; the former way, for the benchmark; D55).
    sfu_video_on_demand: bool = True
    #: SFU mode: a subscription estimates the bandwidth it receives (aiortc's REMB, from the
    #: abs-send-time header extension of every video packet) and tells Janus, which does not use
    #: a subscriber's REMB. False: the subscription's answer leaves abs-send-time out, so no
    #: estimate is made. True: the former way, kept for the benchmark (docs/decisions.md D56).
    sfu_estimate_bandwidth: bool = False
    #: The kinds of sent tracks (``audio``, ``video``) whose frames may be encoded on the event
    #: loop as they are sent: audio always, video by the SFU mode's publisher (one encoder for the
    #: camera; a hub encodes it once per member, in threads); the others in aiortc's thread pool,
    #: a hand-over per frame. ``()``: all in the pool (the former way, for the benchmark; D64).
    encode_on_loop: tuple[str, ...] = ("audio", "video")
    #: seconds a snapshot waits for the first decoded frame once decoding is turned on (D55).
    sfu_video_wake: float = 3.0
    #: JPEG quality of snapshots and photos.
    jpeg_quality: int = 90
    #: Extra PyAV options for a device or file input (e.g. ``{"input_format": "mjpeg"}``).
    input_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.video_width < 16 or self.video_height < 16 or self.video_width % 2 or self.video_height % 2:
            raise MediaError("video size: even numbers of at least 16 pixels, e.g. 640x480")
        if self.photo_width % 2 or self.photo_height % 2 or self.photo_width < 16 or self.photo_height < 16:
            raise MediaError("photo size: even numbers of at least 16 pixels, e.g. 1280x720")
        if not 1 <= self.fps <= 60:
            raise MediaError("fps: between 1 and 60")
        if self.offline_threshold <= 0 or self.close_timeout <= 0 or self.record_chunk_seconds <= 0:
            raise MediaError("offline_threshold, close_timeout and record_chunk_seconds must be positive")
        if self.watchdog_interval is not None and self.watchdog_interval <= 0:
            raise MediaError("watchdog_interval must be positive")
        if not set(self.encode_on_loop) <= {"audio", "video"}:
            raise MediaError("encode_on_loop: the kinds audio and video")
        if self.sfu_video_wake <= 0:
            raise MediaError("sfu_video_wake must be positive")
        if not 1 <= self.jpeg_quality <= 95:
            raise MediaError("jpeg_quality: between 1 and 95")
        if self.audio_input is not None and self.audio_input.partition(":")[0] not in AUDIO_INPUTS:
            raise MediaError(
                f"audio_input {self.audio_input!r}: use alsa:<device>, pulse:<source> or oss:<device>"
            )
        parse_source(self.source)

    @property
    def source_spec(self) -> SourceSpec:
        return parse_source(self.source)

    @property
    def check_interval(self) -> float:
        """How often the frame watchdog looks."""
        if self.watchdog_interval is not None:
            return self.watchdog_interval
        return self.offline_threshold / 10
