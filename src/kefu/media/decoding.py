"""Received media decoded only while something asks for it (the SFU mode's subscriptions).

aiortc decodes every frame a receiver gets, in a thread of its own, and hands each
decoded frame to the event loop (``run_coroutine_threadsafe``: a wake-up of the
loop per frame), where the track's reader takes it. Nothing in the plugin plays
the members' audio, and a plugin without a window shows no video: in the SFU
mode two other members' audio and video are decoded and handed over for
nobody. :func:`decode_on_demand` lets a receiver's encoded frames reach its
decoder only while ``wanted()`` says so — someone awaits the track's next frame
or listens to every frame (:meth:`MediaPeer.next_frame`,
:meth:`MediaPeer.add_frame_listener`). The packets are still received,
decrypted and counted as before (RTP statistics, RTCP), and every encoded frame
not decoded is reported to ``skipped`` (the frame watchdog sees the video
arrive without decoding it).

Opus needs no key frame: the first frame asked for decodes at once (D49). VP8
decoded from the middle of a stream needs a key frame first: with
``key_frames`` the gate, once open again, passes nothing until a key frame
comes, and asks the sender for one (an RTCP PLI, which Janus forwards to the
feed's publisher) when it opens and every ``pli_every`` frames while it waits.
docs/decisions.md D49, D55.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

__all__ = ["decode_on_demand", "is_key_frame"]

_QUEUE = "_RTCRtpReceiver__decoder_queue"  # aiortc 1.x: the receiver's frames to decode


def is_key_frame(codec: str, data: bytes) -> bool | None:
    """Whether an encoded frame is a key frame; ``None`` when the codec is not known here.

    VP8 (RFC 6386 §9.1): bit 0 of the frame tag is 0 for a key frame."""
    if codec.upper() == "VP8":
        return bool(data) and data[0] & 0x01 == 0
    return None


def decode_on_demand(
    pc: RTCPeerConnection,
    mid: str,
    wanted: Callable[[], bool],
    *,
    skipped: Callable[[], None] | None = None,
    key_frames: bool = False,
    pli_every: int = 15,
) -> bool:
    """Gate the decoding of what ``pc`` receives on the m-line ``mid`` by ``wanted``; whether
    it could (an aiortc without that queue decodes everything, as before). ``skipped`` is
    called (on the event loop) for every encoded frame not decoded; ``key_frames``: decode
    from a key frame on after a pause, asking for one (see the module's docstring)."""
    receiver = next((t.receiver for t in pc.getTransceivers() if t.mid == mid), None)
    queue = getattr(receiver, _QUEUE, None)
    if receiver is None or queue is None:
        return False
    put = type(queue).put.__get__(queue)  # the queue's own put, whatever gate came before
    waiting = 0 if key_frames else -1  # frames since the gate opened without a key frame; -1: none due
    tasks: set[asyncio.Task[Any]] = set()

    def ask_key_frame() -> None:
        for source in receiver.getSynchronizationSources():
            task = asyncio.ensure_future(receiver._send_rtcp_pli(source.source))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def gated(item: Any, *args: Any, **kw: Any) -> None:
        nonlocal waiting
        if item is None:  # the receiver stops its decoder thread
            put(item, *args, **kw)
            return
        if not wanted():
            waiting = 0 if key_frames else -1
            if skipped is not None:
                skipped()
            return
        if waiting >= 0:
            codec, frame = item
            if is_key_frame(codec.name, frame.data) is False:
                if waiting % pli_every == 0:
                    ask_key_frame()
                waiting += 1
                if skipped is not None:
                    skipped()
                return
            waiting = -1
        put(item, *args, **kw)

    queue.put = gated
    return True
