"""kefu's media layer: WebRTC audio and video with aiortc and PyAV (DESIGN §6).

The only package that imports aiortc or av. The plugin uses a
:class:`MediaHub` per call (the primary agent's side: one peer connection
per member, forwarding between them, snapshot, stream-offline watchdog,
recording); the Python visitor uses a :class:`MediaMember` (its camera,
photo, screen share). Both speak the signalling messages of
:mod:`kefu.media.peer`, carried opaquely by the server. See docs/media.md.
"""

from .errors import MediaError, NegotiationError, NoFrameError
from .events import (
    Emitter,
    MediaEvent,
    NegotiationNeeded,
    StreamOffline,
    StreamOnline,
    TrackAdded,
    TrackRemoved,
)
from .frames import Image, RgbImage, encode_jpeg, to_rgb
from .hub import MediaHub
from .ice import (
    default_host_addresses,
    gathered_addresses,
    host_addresses,
    ice_servers_from_wire,
    is_loopback_server,
    rtc_configuration,
)
from .member import MediaMember
from .pattern import PatternPainter, colour_for, read_counter, sample_rgb
from .peer import MediaPeer, PeerStats, ReceivedTrack
from .recorder import Recorder, RecordingChunk, RecordingResult
from .settings import IceServer, MediaSettings, SourceSpec, parse_source
from .sfu import SfuMember
from .signal import DirectLink
from .source import MediaSource, open_source
from .tracks import Label, Role, parse_track_label, track_label
from .watchdog import FrameWatchdog

__all__ = [
    "DirectLink",
    "Emitter",
    "FrameWatchdog",
    "IceServer",
    "Image",
    "Label",
    "MediaError",
    "MediaEvent",
    "MediaHub",
    "MediaMember",
    "MediaPeer",
    "MediaSettings",
    "MediaSource",
    "NegotiationError",
    "NegotiationNeeded",
    "NoFrameError",
    "PatternPainter",
    "PeerStats",
    "ReceivedTrack",
    "Recorder",
    "RecordingChunk",
    "RecordingResult",
    "RgbImage",
    "Role",
    "SfuMember",
    "SourceSpec",
    "StreamOffline",
    "StreamOnline",
    "TrackAdded",
    "TrackRemoved",
    "colour_for",
    "default_host_addresses",
    "encode_jpeg",
    "gathered_addresses",
    "host_addresses",
    "ice_servers_from_wire",
    "is_loopback_server",
    "open_source",
    "parse_source",
    "parse_track_label",
    "read_counter",
    "rtc_configuration",
    "sample_rgb",
    "to_rgb",
    "track_label",
]
