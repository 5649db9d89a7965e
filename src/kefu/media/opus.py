"""The microphone's Opus encoder: mono at 48 kbit/s, as a browser sends a microphone.

aiortc's ``OpusEncoder`` resamples every frame to stereo and encodes it at
96 kbit/s. A contact centre's microphone is one voice: the browsers' WebRTC
sends Opus mono (``stereo=0``, the default of RFC 7587's ``opus/48000/2``, whose
receivers decode mono and stereo packets alike) at about 32–48 kbit/s. Encoding
mono halves the samples the encoder works on: measured 270 → 173 µs of CPU a
20 ms frame (same process, 600 frames), ≈ 0.5 % of a core for every
microphone a kefu process sends (the agent's plugin, the Python visitor, the
hub's mix). :func:`install` makes aiortc's senders create this encoder for
Opus (they call ``get_encoder`` through the module ``aiortc.rtcrtpsender``).
docs/decisions.md D63.
"""

from __future__ import annotations

from typing import Any

from aiortc.codecs.opus import SAMPLE_RATE, SAMPLES_PER_FRAME, TIME_BASE, OpusEncoder
from av import AudioResampler, CodecContext

__all__ = ["BIT_RATE", "MonoOpusEncoder", "install"]

#: bits a second of the microphone's Opus stream (aiortc: 96,000 in stereo)
BIT_RATE = 48_000


class MonoOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder (its ``encode`` and ``pack``), mono at :data:`BIT_RATE`."""

    def __init__(self) -> None:  # not OpusEncoder's: it would open a stereo encoder first
        self.codec = CodecContext.create("libopus", "w")
        self.codec.bit_rate = BIT_RATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.options = {"application": "voip"}
        self.codec.sample_rate = SAMPLE_RATE
        self.codec.time_base = TIME_BASE
        self.resampler = AudioResampler(
            format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=SAMPLES_PER_FRAME
        )
        self.first_packet_pts = None


def install() -> None:
    """aiortc's senders encode Opus with :class:`MonoOpusEncoder` (idempotent)."""
    from aiortc import rtcrtpsender

    current = getattr(rtcrtpsender, "get_encoder")  # noqa: B009 (not in the module's __all__)
    original = getattr(current, "kefu_original", current)

    def get_encoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "audio/opus":
            return MonoOpusEncoder()
        return original(codec)

    get_encoder.kefu_original = original  # type: ignore[attr-defined]
    setattr(rtcrtpsender, "get_encoder", get_encoder)  # noqa: B010
