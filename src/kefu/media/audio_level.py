"""The audio level of every sent audio frame, computed in C rather than per sample in Python.

aiortc puts the level of each audio frame it sends in the RTP header extension
``ssrc-audio-level`` (RFC 6464), computed by ``aiortc.rtp.compute_audio_level_dbov``
(RFC 6465, Appendix A) with a Python loop over the frame's samples: 960 a frame of
20 ms at 48 kHz, 50 frames a second, on the event loop — about 1 % of a core for
each microphone sent. :func:`audio_level_dbov` gives the same value with the sum of
the squares taken by ``audioop`` in C (the standard library's up to Python 3.12,
the ``audioop-lts`` package from 3.13): the samples widened to 32 bits first, so
that ``audioop.rms``'s integer result keeps 16 more bits than the level needs
(212 µs a frame for aiortc's loop, a few µs here). :func:`install` makes aiortc's
senders use it (they call it through the module ``aiortc.rtp``). docs/decisions.md D57.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.11 and 3.12 warn that 3.13 drops it
    import audioop

__all__ = ["audio_level_dbov", "install"]

_MAX_SAMPLE = 32767
_MIN_LEVEL = -127  # dBov, RFC 6464: silence
_WIDEN = 1 << 16  # a 16-bit sample widened to 32 bits by lin2lin


def audio_level_dbov(frame: Any) -> int:
    """The level (dBov, -127..0) of a 16-bit ``av.AudioFrame``, as aiortc's function computes it."""
    data = bytes(frame.planes[0])
    count = len(data) // 2  # aiortc sums every sample of the plane's buffer, and divides by frame.samples
    if count == 0:
        return _MIN_LEVEL
    rms_of_buffer = audioop.rms(audioop.lin2lin(data, 2, 4), 4) / _WIDEN
    rms = math.sqrt(rms_of_buffer * rms_of_buffer * count / frame.samples) / _MAX_SAMPLE
    if rms <= 0:
        return _MIN_LEVEL
    return round(min(max(20 * math.log10(rms), _MIN_LEVEL), 0))


def install() -> None:
    """aiortc's senders compute the audio level with :func:`audio_level_dbov` (idempotent)."""
    from aiortc import rtp

    rtp.compute_audio_level_dbov = audio_level_dbov
