"""A receiving m-line used again with other SSRCs: routed to its receiver (an aiortc gap).

aiortc registers a receiver's SSRCs with the transport's RTP router once, when the
receiver starts (``RTCRtpReceiver.receive``). A transceiver that went ``inactive`` and
is made to receive again by a later offer keeps its started receiver, so the new
SSRCs of that offer are never registered: its packets match no SSRC, and their
payload type, shared with the other video m-line, matches two receivers, so they
are dropped. Janus does exactly this to a subscription: a stream taken away
(``unsubscribe``, a screen share stopped) leaves its m-line inactive, and the next
stream added (the share started again) takes that m-line with new SSRCs.

:func:`route_ssrcs` registers the m-line's media SSRCs (not the retransmission ones
of an ``FID`` group, which the receiver maps itself only when it starts) after every
remote description; registering known ones again changes nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["route_ssrcs"]


def route_ssrcs(transceiver: Any, media: Any) -> None:
    """Route ``media``'s (an aiortc ``MediaDescription``) SSRCs to ``transceiver``'s receiver."""
    rtx = {int(g.items[1]) for g in media.ssrc_group if g.semantic == "FID" and len(g.items) > 1}
    ssrcs = [s.ssrc for s in media.ssrc if s.ssrc not in rtx]
    receiver = transceiver.receiver
    router = getattr(receiver.transport, "_rtp_router", None)
    if ssrcs and router is not None:
        router.register_receiver(receiver, ssrcs=ssrcs, payload_types=[])
