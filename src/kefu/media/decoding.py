"""Received audio decoded only while something asks for it (the SFU mode's subscriptions).

aiortc decodes every frame a receiver gets, in a thread of its own, and hands each
decoded frame to the event loop (``run_coroutine_threadsafe``: a wake-up of the
loop per frame), where the track's reader takes it. Nothing in the plugin plays
the members' audio: in the SFU mode two other members' audio is 100 frames a
second decoded and handed over for nobody. :func:`decode_on_demand` lets a
receiver's encoded frames reach its decoder only while ``wanted()`` says so —
someone awaits the track's next frame or listens to every frame
(:meth:`MediaPeer.next_frame`, :meth:`MediaPeer.add_frame_listener`). The
packets are still received, decrypted and counted as before (RTP statistics,
RTCP). Opus needs no key frame: the first frame asked for decodes at once
(video does, and is always decoded: the frame watchdog, snapshots and the tiles
read it). docs/decisions.md D49.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

__all__ = ["decode_on_demand"]

_QUEUE = "_RTCRtpReceiver__decoder_queue"  # aiortc 1.x: the receiver's frames to decode


def decode_on_demand(pc: RTCPeerConnection, mid: str, wanted: Callable[[], bool]) -> bool:
    """Gate the decoding of what ``pc`` receives on the m-line ``mid`` by ``wanted``; whether
    it could (an aiortc without that queue decodes everything, as before)."""
    receiver = next((t.receiver for t in pc.getTransceivers() if t.mid == mid), None)
    queue = getattr(receiver, _QUEUE, None)
    if queue is None:
        return False
    put = type(queue).put.__get__(queue)  # the queue's own put, whatever gate came before

    def gated(item: Any, *args: Any, **kw: Any) -> None:
        if item is None or wanted():  # None: the receiver stops its decoder thread
            put(item, *args, **kw)

    queue.put = gated
    return True
