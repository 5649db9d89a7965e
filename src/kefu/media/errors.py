"""Errors of the media layer, in the package's exception tree::

    KefuError                       (kefu.protocol.errors)
    └── ApiError
        └── MediaError              a media operation failed (bad option, device, codec)
            ├── NoFrameError        no video frame from that member yet (``no_media``)
            └── NegotiationError    an offer / answer that does not fit the peer's state

Each carries a catalogue code, so the plugin answers them with ``to_wire()``.
"""

from __future__ import annotations

from kefu.protocol.errors import ApiError, ErrorCode

__all__ = ["MediaError", "NegotiationError", "NoFrameError"]


class MediaError(ApiError):
    """A media operation failed; the message says what to change."""

    code = ErrorCode.internal


class NoFrameError(MediaError):
    """A snapshot or a frame was asked of a member whose video has not arrived."""

    code = ErrorCode.no_media


class NegotiationError(MediaError):
    """An SDP offer or answer that is malformed or arrives in the wrong state."""

    code = ErrorCode.invalid_state
