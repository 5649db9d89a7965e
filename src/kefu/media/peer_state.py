"""What a peer connection sends, received and counted (:class:`~kefu.media.peer.MediaPeer`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver
from aiortc.sdp import SessionDescription
from av.frame import Frame

from .tracks import Label, LabelledTrack, parse_track_label

__all__ = [
    "FrameListener",
    "PeerStats",
    "ReceivedTrack",
    "SentTrack",
    "bind_pending",
    "label_of_track",
    "read_stats",
    "selected_route",
]

#: told every received frame: its track's label, the frame, the time it came
FrameListener = Callable[[Label, Frame, float], None]


@dataclass(frozen=True, slots=True)
class PeerStats:
    """RTP counters of one peer connection, summed per kind."""

    packets_received: dict[str, int]
    packets_sent: dict[str, int]
    bytes_sent: dict[str, int]


@dataclass(eq=False)
class ReceivedTrack:
    """A remote track this peer receives, and what arrived on it."""

    label: Label
    mid: str
    track: MediaStreamTrack
    frames: int = 0
    #: video frames that arrived, decoded or not (an on-demand track skips most: D55)
    arrived: int = 0
    samples: int = 0
    latest: Frame | None = None
    last_time: float | None = None
    task: asyncio.Task[None] | None = None
    proxy: MediaStreamTrack | None = None
    #: its frames are decoded only while asked for (latest is then not the last one: D55)
    on_demand: bool = False


async def read_stats(pc: RTCPeerConnection) -> PeerStats:
    """The RTP counters of ``pc``, summed per kind."""
    report = await pc.getStats()
    received: dict[str, int] = {"audio": 0, "video": 0}
    sent: dict[str, int] = {"audio": 0, "video": 0}
    sent_bytes: dict[str, int] = {"audio": 0, "video": 0}
    for s in report.values():
        if s.type == "inbound-rtp":
            received[s.kind] = received.get(s.kind, 0) + s.packetsReceived
        elif s.type == "outbound-rtp":
            sent[s.kind] = sent.get(s.kind, 0) + s.packetsSent
            sent_bytes[s.kind] = sent_bytes.get(s.kind, 0) + s.bytesSent
    return PeerStats(received, sent, sent_bytes)


def selected_route(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """The candidate types (``host``, ``srflx``, ``relay``) of the pair the
    media flows on, local then remote; ``None`` before ICE chose one."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        pair = ice._connection._nominated.get(1)  # aioice: the selected pair of RTP
        if pair is not None:
            return pair.local_candidate.type, pair.remote_candidate.type
    return None


@dataclass(eq=False)
class SentTrack:
    """A track this peer sends, and the m-line it got (``None``: waiting for a slot)."""

    label: str
    track: LabelledTrack
    direction: str
    transceiver: RTCRtpTransceiver | None = None


def label_of_track(
    track_id: str | None,
    kind: str,
    mid: str,
    remote: str,
    trust_labels: bool,
    received: dict[str, ReceivedTrack],
) -> Label:
    """Whose track this is: its label (trusted, or the remote member's role), else by order:
    an unlabelled track (e.g. from a browser) is the mic, the camera, then the screen."""
    label = parse_track_label(track_id)
    if label is not None and label.kind == kind:
        if trust_labels:
            return label
        return Label(remote, label.role)
    # an unlabelled track (e.g. from a browser): mic, camera, then screen
    if kind == "audio":
        return Label(remote, "mic")
    has_camera = any(r.label == Label(remote, "camera") and r.mid != mid for r in received.values())
    return Label(remote, "screen" if has_camera else "camera")


def bind_pending(
    pc: RTCPeerConnection,
    sent_tracks: list[SentTrack],
    burnt: set[RTCRtpTransceiver],
    offer: SessionDescription,
) -> None:
    """Answerer: put tracks waiting for a slot on m-lines the offer can receive on."""
    remote_dir = {m.rtp.muxId: m.direction for m in offer.media}
    for sent in sent_tracks:
        if sent.transceiver is not None:
            continue
        for t in pc.getTransceivers():
            offered = remote_dir.get(t.mid or "")
            if (
                t.kind == sent.track.kind
                and t.sender.track is None
                and t not in burnt
                and offered in ("sendrecv", "recvonly")
                and not any(s.transceiver is t for s in sent_tracks)
            ):
                t.sender.replaceTrack(sent.track)
                t.direction = "sendrecv" if offered == "sendrecv" else "sendonly"
                sent.transceiver = t
                break
